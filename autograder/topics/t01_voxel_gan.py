"""Tests of topic 01_voxel_gan (3D-GAN on voxel grids, Wu et al. 2016).

Public checks (students run them with ``make check``) use hand-computed cases and invariants;
hidden checks compare with the reference on fresh random inputs, and the quality check trains the
student's generator and discriminator with the kit's loop (``gen3d.hw_voxel_gan.train_gan``) on a
fixed budget and compares its figures with the reference's on the same budget.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from autograder.spec import Check, Topic, Verdict, all_of, as_array, describe, expect_close, scalar

FUNCTIONS = ["VoxelGenerator", "VoxelDiscriminator", "discriminator_loss", "generator_loss",
             "discriminator_accuracy", "should_update_discriminator", "interpolate_latents"]
RESOLUTIONS = (16, 32, 64)
SMALL_CHANNELS = 8  # base_channels for shape tests: divisible by 2^3, the most halvings (R = 64)


# ============================================================================ probe helpers
def _torch():
    import torch

    return torch


def _seed(ctx, offset: int = 0) -> None:
    _torch().manual_seed((ctx.seed + 104729 * offset) % (2**31))


def _randn(ctx, *shape, offset: int = 0, scale: float = 1.0, dtype=None):
    torch = _torch()
    x = torch.randn(*shape, generator=ctx.generator(offset), dtype=torch.float64) * scale
    return x.to(dtype or torch.float32)


def _stages(ctx, name: str, layer_type: str, *args, x=None) -> dict:
    """Output (C, D, H, W) of every ``layer_type`` module of a fresh model, in call order."""
    torch = _torch()
    _seed(ctx)
    model = ctx.fn(name)(*args)
    kind = getattr(torch.nn, layer_type)
    seen = []
    for module in model.modules():
        if isinstance(module, kind):
            module.register_forward_hook(lambda m, i, o: seen.append(list(o.shape[1:])))
    with torch.no_grad():
        model(x)
    return {"stages": seen}


def _batchnorm_probe(model, x) -> dict:
    """Compare every BatchNorm3d's output with a batch-statistics normalisation of its input."""
    torch = _torch()
    errors, flags = [], []

    def hook(module, inputs, output):
        h = inputs[0].detach().double()
        mean = h.mean(dim=(0, 2, 3, 4), keepdim=True)
        var = h.var(dim=(0, 2, 3, 4), keepdim=True, unbiased=False)
        want = (h - mean) / torch.sqrt(var + module.eps)
        if module.affine:
            want = want * module.weight.detach().double().view(1, -1, 1, 1, 1) \
                + module.bias.detach().double().view(1, -1, 1, 1, 1)
        errors.append(float((output.detach().double() - want).abs().max()))
        flags.append(bool(module.training))

    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.register_forward_hook(hook)
    model.train()
    with torch.no_grad():
        model(x)
    return {"bn_errors": errors, "bn_training": flags}


def _gradient_probe(model, x) -> dict:
    """Which parameters (and the input) receive a finite gradient from a random linear loss."""
    torch = _torch()
    model.train()
    x = x.clone().requires_grad_(True)
    out = model(x)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    missing, bad, zero_weights = [], [], []
    for name, param in model.named_parameters():
        if param.grad is None:
            missing.append(name)
        elif not torch.isfinite(param.grad).all():
            bad.append(name)
        elif param.dim() > 1 and float(param.grad.abs().max()) == 0.0:
            zero_weights.append(name)
    return {"missing": missing, "nonfinite": bad, "zero_weights": zero_weights,
            "n_params": len(list(model.parameters())),
            "input_grad": x.grad is not None and bool(torch.isfinite(x.grad).all())}


def _count_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _device_probe(ctx, call) -> dict:
    """Run ``call(device, dtype)`` in float32 and float64; report device and dtype of the results."""
    torch = _torch()
    out = {}
    for tag, dtype in (("f32", torch.float32), ("f64", torch.float64)):
        result = call(ctx.device, dtype)
        out[f"{tag}_is_tensor"] = torch.is_tensor(result)
        if torch.is_tensor(result):
            out[f"{tag}_device"] = result.device.type
            out[f"{tag}_dtype"] = str(result.dtype).replace("torch.", "")
            out[f"{tag}_value"] = result.detach().double().cpu()
    return out


# ============================================================================ judge helpers
def _fail(message: str) -> Verdict:
    return Verdict(False, message)


def _judge_device(fn: str, student, reference, ctx) -> Verdict:
    for tag, want in (("f32", "float32"), ("f64", "float64")):
        if not student.get(f"{tag}_is_tensor"):
            return _fail(f"{fn} on {ctx.device} with {want} inputs did not return a tensor.")
        if student.get(f"{tag}_device") != ctx.device.split(":")[0]:
            return _fail(f"{fn}: inputs on {ctx.device}, output on {student.get(f'{tag}_device')}. Create new "
                         "tensors with device=x.device (or *_like helpers); never call .cpu()/.cuda() inside.")
        if student.get(f"{tag}_dtype") != want:
            return _fail(f"{fn}: {want} inputs gave a {student.get(f'{tag}_dtype')} output; keep the input's "
                         "dtype (create constants with dtype=x.dtype).")
        got = as_array(student.get(f"{tag}_value"), f"{fn} output")
        if not np.isfinite(got).all():
            return _fail(f"{fn} on {ctx.device} ({want}) returned non-finite values: {describe(got)}.")
    return Verdict(True, f"{fn} keeps the device ({ctx.device}) and dtype (float32, float64)")


def _judge_gradients(fn: str, student, reference, ctx) -> Verdict:
    if student.get("missing"):
        return _fail(f"{fn}: no gradient reaches {student['missing'][:4]}: is that layer created in __init__ "
                     "but never used in forward, or is the activation detached (.detach(), .data, no_grad)?")
    if student.get("nonfinite"):
        return _fail(f"{fn}: non-finite gradients in {student['nonfinite'][:4]}.")
    if student.get("zero_weights"):
        return _fail(f"{fn}: the weights {student['zero_weights'][:4]} get an all-zero gradient: is their "
                     "output multiplied by zero or cut off somewhere in forward?")
    if not student.get("input_grad"):
        return _fail(f"{fn}: the gradient does not flow back to the input (is it detached?).")
    return Verdict(True, f"{fn}: gradients reach all {student.get('n_params')} parameter tensors and the input")


def _judge_batchnorm(fn: str, expected_count: int):
    def judge(student, reference, ctx) -> Verdict:
        errors = student.get("bn_errors") or []
        if len(errors) < expected_count:
            return _fail(f"{fn} should have a BatchNorm3d after each of its (transposed) convolutions "
                         f"({expected_count} at this resolution), found {len(errors)} in use.")
        if not all(student.get("bn_training") or []):
            return _fail(f"{fn}: after .train() some BatchNorm3d layers are still in eval mode: while training, "
                         "BatchNorm must normalise with the statistics of the current batch. Do not override "
                         "train()/eval() or freeze the norm layers.")
        worst = max(errors)
        if not worst < 1e-3:
            return _fail(f"{fn}: in training mode a BatchNorm3d output differs by {worst:.3g} from the "
                         "batch-statistics normalisation of its input: is it using running statistics "
                         "(eval mode) or a hand-written normalisation?")
        return Verdict(True, f"{fn}: {len(errors)} BatchNorm3d layers normalise with batch statistics in training")
    return judge


def _judge_param_count(fn: str):
    def judge(student, reference, ctx) -> Verdict:
        try:
            got, want = scalar(student, "n_params", f"{fn} parameter count"), \
                scalar(reference, "n_params", "reference parameter count")
        except ValueError as err:
            return _fail(str(err))
        if abs(got - want) <= 0.01 * want:
            return Verdict(True, f"{fn}: {int(got)} parameters (reference {int(want)})")
        return _fail(f"{fn} has {int(got)} parameters, the architecture of the docstring has about {int(want)}: "
                     "check the kernel sizes (4), the channels (halved/doubled at every stage) and the number "
                     "of stages (log2(R / 4)).")
    return judge


# ============================================================================ VoxelGenerator
def probe_generator_shapes(ctx) -> dict:
    torch = _torch()
    out = {}
    for r in RESOLUTIONS:
        _seed(ctx, r)
        gen = ctx.fn("VoxelGenerator")(5, r, SMALL_CHANNELS)
        with torch.no_grad():
            out[f"out_{r}"] = gen(_randn(ctx, 3, 5, offset=r))
    return out


def judge_generator_shapes(student, reference, ctx) -> Verdict:
    for r in RESOLUTIONS:
        label = f"VoxelGenerator(z_dim=5, resolution={r}, base_channels={SMALL_CHANNELS}) on z of shape (3, 5)"
        try:
            got = as_array(student.get(f"out_{r}"), label)
        except ValueError as err:
            return _fail(str(err))
        if got.shape != (3, 1, r, r, r):
            return _fail(f"{label}: expected shape (3, 1, {r}, {r}, {r}), got {got.shape}.")
        if not np.isfinite(got).all():
            return _fail(f"{label}: non-finite values ({describe(got)}).")
        if got.min() < 0 or got.max() > 1:
            hint = ("unbounded values: is the final Sigmoid missing?" if got.min() < -1 or got.max() > 1
                    else "negative values: tanh gives [-1, 1]; occupancy needs a Sigmoid")
            return _fail(f"{label}: occupancy must lie in [0, 1], got range [{got.min():.3g}, {got.max():.3g}] "
                         f"({hint}).")
    return Verdict(True, "VoxelGenerator: (B, 1, R, R, R) occupancy in [0, 1] for R in 16, 32, 64")


def probe_generator_stages(ctx) -> dict:
    return _stages(ctx, "VoxelGenerator", "ConvTranspose3d", 6, 32, 16, x=_randn(ctx, 2, 6))


def judge_generator_stages(student, reference, ctx) -> Verdict:
    sizes = [s[1] for s in student.get("stages") or [] if len(s) == 4]
    want = [4, 8, 16, 32]
    if sizes == want:
        return Verdict(True, "VoxelGenerator: ConvTranspose3d outputs at 4^3, 8^3, 16^3, 32^3 (R = 32)")
    if not sizes:
        return _fail("VoxelGenerator(6, 32, 16): no nn.ConvTranspose3d ran in forward; the generator must "
                     "upsample with ConvTranspose3d layers.")
    stuck = [i for i in range(1, len(sizes)) if sizes[i] != 2 * sizes[i - 1]]
    hint = ""
    if stuck:
        i = stuck[0]
        hint = (f" Transposed convolution #{i + 1} maps {sizes[i - 1]}^3 to {sizes[i]}^3 instead of "
                f"{2 * sizes[i - 1]}^3: use kernel_size=4, stride=2, padding=1 ((n - 1) * 2 - 2 + 4 = 2n).")
    elif sizes[0] != 4:
        hint = " The first one should turn the 1^3 latent volume into 4^3 (kernel_size=4, stride=1, padding=0)."
    return _fail(f"VoxelGenerator(6, 32, 16): the ConvTranspose3d outputs have sides {sizes}, expected {want} "
                 f"(a 4^3 start, then doubling stage by stage).{hint}")


def probe_generator_channels(ctx) -> dict:
    return _stages(ctx, "VoxelGenerator", "ConvTranspose3d", 6, 32, 16, x=_randn(ctx, 2, 6))


def judge_generator_channels(student, reference, ctx) -> Verdict:
    channels = [s[0] for s in student.get("stages") or [] if len(s) == 4]
    want = [16, 8, 4, 1]
    if channels == want:
        return Verdict(True, "VoxelGenerator: channels 16 -> 8 -> 4 -> 1 (base_channels = 16, R = 32)")
    return _fail(f"VoxelGenerator(6, 32, base_channels=16): the ConvTranspose3d outputs have {channels} channels, "
                 f"expected {want}: base_channels at 4^3, halved by every doubling stage, 1 at the end.")


def probe_generator_batchnorm(ctx) -> dict:
    _seed(ctx)
    return _batchnorm_probe(ctx.fn("VoxelGenerator")(6, 16, 8), _randn(ctx, 4, 6))


def probe_generator_gradients(ctx) -> dict:
    _seed(ctx)
    return _gradient_probe(ctx.fn("VoxelGenerator")(6, 16, 8), _randn(ctx, 3, 6))


def probe_generator_params(ctx) -> dict:
    return {"n_params": _count_params(ctx.fn("VoxelGenerator")(20, 32, 32))}


def probe_generator_device(ctx) -> dict:
    def call(device, dtype):
        _seed(ctx)
        gen = ctx.fn("VoxelGenerator")(6, 16, 8).to(device=device, dtype=dtype)
        with _torch().no_grad():
            return gen(_randn(ctx, 2, 6, dtype=dtype).to(device))
    return _device_probe(ctx, call)


# ============================================================================ VoxelDiscriminator
def _real_like(ctx, b: int, r: int, offset: int = 0):
    """(b, 1, r, r, r) random {0, 1} grids (a quarter filled)."""
    torch = _torch()
    return (torch.rand(b, 1, r, r, r, generator=ctx.generator(offset)) < 0.25).float()


def probe_discriminator_shapes(ctx) -> dict:
    torch = _torch()
    out = {}
    for r in RESOLUTIONS:
        _seed(ctx, r)
        disc = ctx.fn("VoxelDiscriminator")(r, SMALL_CHANNELS)
        with torch.no_grad():
            out[f"out_{r}"] = disc(_real_like(ctx, 3, r, r))
    return out


def judge_discriminator_shapes(student, reference, ctx) -> Verdict:
    for r in RESOLUTIONS:
        label = f"VoxelDiscriminator(resolution={r}, base_channels={SMALL_CHANNELS}) on x of shape (3, 1, {r}, {r}, {r})"
        try:
            got = as_array(student.get(f"out_{r}"), label)
        except ValueError as err:
            return _fail(str(err))
        if got.shape != (3,):
            return _fail(f"{label}: expected logits of shape (3,), got {got.shape} (flatten the final "
                         "(B, 1, 1, 1, 1) volume to (B,)).")
        if not np.isfinite(got).all():
            return _fail(f"{label}: non-finite logits ({describe(got)}).")
    return Verdict(True, "VoxelDiscriminator: (B,) logits for R in 16, 32, 64")


def probe_discriminator_stages(ctx) -> dict:
    return _stages(ctx, "VoxelDiscriminator", "Conv3d", 32, 16, x=_real_like(ctx, 2, 32))


def judge_discriminator_stages(student, reference, ctx) -> Verdict:
    stages = [s for s in student.get("stages") or [] if len(s) == 4]
    sizes, channels = [s[1] for s in stages], [s[0] for s in stages]
    want_sizes, want_channels = [16, 8, 4, 1], [4, 8, 16, 1]
    if sizes != want_sizes:
        return _fail(f"VoxelDiscriminator(32, 16): the Conv3d outputs have sides {sizes}, expected {want_sizes}: "
                     "each block halves the resolution (kernel_size=4, stride=2, padding=1) down to 4^3, then a "
                     "last Conv3d(kernel_size=4, stride=1, padding=0) maps 4^3 to 1^3.")
    if channels != want_channels:
        return _fail(f"VoxelDiscriminator(32, base_channels=16): the Conv3d outputs have {channels} channels, "
                     f"expected {want_channels} (doubling up to base_channels at 4^3, then one logit).")
    return Verdict(True, "VoxelDiscriminator: 32^3 -> 16^3 -> 8^3 -> 4^3 -> 1^3 with channels 4, 8, 16, 1")


def probe_discriminator_separates(ctx) -> dict:
    """Fit D for a few steps to tell full-bottom grids from full-top grids; report its logits."""
    torch = _torch()
    _seed(ctx)
    disc = ctx.fn("VoxelDiscriminator")(16, 8)
    noise = _real_like(ctx, 8, 16, 1) * 0.3
    x = noise.clone()
    x[:4, :, :, :8] += 0.7  # lower half (H = y < 0) filled: label 1
    x[4:, :, :, 8:] += 0.7  # upper half filled: label 0
    labels = torch.tensor([1.0] * 4 + [0.0] * 4)
    opt = torch.optim.Adam(disc.parameters(), lr=2e-3)
    disc.train()
    for _ in range(40):
        logits = disc(x).reshape(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return {"logits": disc(x).reshape(-1)}


def judge_discriminator_separates(student, reference, ctx) -> Verdict:
    try:
        logits = as_array(student.get("logits"), "VoxelDiscriminator logits").astype(np.float64)
    except ValueError as err:
        return _fail(str(err))
    if logits.shape != (8,) or not np.isfinite(logits).all():
        return _fail(f"VoxelDiscriminator: expected 8 finite logits, got {describe(logits)}.")
    if logits.min() >= 0 and logits.max() <= 1:
        return _fail("VoxelDiscriminator: after 40 training steps on two easy classes every output is still in "
                     f"[0, 1] ({describe(logits)}): return raw logits, not probabilities (no final Sigmoid; "
                     "the loss applies it).")
    accuracy = ((logits[:4] > 0).sum() + (logits[4:] < 0).sum()) / 8
    if accuracy < 1:
        return _fail(f"VoxelDiscriminator could not learn to separate two easy classes of grids in 40 Adam steps "
                     f"(accuracy {accuracy:.2f}, logits {np.round(logits, 2).tolist()}): is the network wired "
                     "as in the docstring (LeakyReLU between layers, no activation after the last Conv3d)?")
    return Verdict(True, "VoxelDiscriminator learns to separate two classes and outputs unbounded logits")


def probe_discriminator_batchnorm(ctx) -> dict:
    _seed(ctx)
    return _batchnorm_probe(ctx.fn("VoxelDiscriminator")(16, 8), _real_like(ctx, 4, 16))


def probe_discriminator_gradients(ctx) -> dict:
    _seed(ctx)
    return _gradient_probe(ctx.fn("VoxelDiscriminator")(16, 8), _real_like(ctx, 3, 16))


def probe_discriminator_params(ctx) -> dict:
    return {"n_params": _count_params(ctx.fn("VoxelDiscriminator")(32, 32))}


def probe_discriminator_device(ctx) -> dict:
    def call(device, dtype):
        _seed(ctx)
        disc = ctx.fn("VoxelDiscriminator")(16, 8).to(device=device, dtype=dtype)
        with _torch().no_grad():
            return disc(_real_like(ctx, 2, 16).to(device=device, dtype=dtype))
    return _device_probe(ctx, call)


# ============================================================================ losses
def _softplus(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-_softplus(-np.asarray(x, np.float64)))


D_CASES = [([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]),
           ([2.0, -1.0, 0.5], [-3.0, 1.5, 0.0]),
           ([6.0, 7.0], [-6.0, -8.0])]
G_CASES = [[0.0, 0.0, 0.0], [-8.0, -8.0], [2.0, -1.0, 0.5, 3.0]]
D_EXTREME = ([1e4, -1e4, 60.0], [1e4, -1e4, -60.0])
G_EXTREME = [1e4, -1e4, 60.0, -60.0]


def _expect_hand(student, key: str, want, label: str, hint: str) -> Verdict:
    """``student[key]`` against a hand-computed array (float64 tolerances)."""
    verdict = expect_close(student, {key: np.asarray(want)}, key, label, rtol=1e-5, atol=1e-7, hint=hint)
    verdict.message = verdict.message.replace("the reference", "the hand-computed value")
    return verdict


def _expected_d(real, fake):
    real, fake = np.asarray(real), np.asarray(fake)
    value = _softplus(-real).mean() + _softplus(fake).mean()
    return value, -_sigmoid(-real) / len(real), _sigmoid(fake) / len(fake)


def _expected_g(fake):
    fake = np.asarray(fake)
    return _softplus(-fake).mean(), -_sigmoid(-fake) / len(fake)


def _loss_call(ctx, name: str, *logits, dtype=None, device=None):
    """Loss value and gradients w.r.t. each logit tensor (lists of floats)."""
    torch = _torch()
    inputs = [torch.tensor(l, dtype=dtype or torch.float64, device=device or "cpu", requires_grad=True)
              for l in logits]
    loss = ctx.fn(name)(*inputs)
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return loss, [g if g is not None else torch.zeros_like(i) for g, i in zip(grads, inputs)]


def probe_d_cases(ctx, cases=D_CASES) -> dict:
    out = {}
    for n, (real, fake) in enumerate(cases):
        loss, (g_real, g_fake) = _loss_call(ctx, "discriminator_loss", real, fake)
        out[f"value_{n}"], out[f"grad_real_{n}"], out[f"grad_fake_{n}"] = loss, g_real, g_fake
    return out


def judge_d_cases(student, reference, ctx, cases=D_CASES) -> Verdict:
    for n, (real, fake) in enumerate(cases):  # 1. values (their mistakes are easiest to name)
        value, _, _ = _expected_d(real, fake)
        label = f"discriminator_loss(real={real}, fake={fake})"
        try:
            got = scalar(student, f"value_{n}", label)
        except ValueError as err:
            return _fail(f"{err} (expected {value:.6g}; logits of +-1e4 need a stable formula: "
                         "F.binary_cross_entropy_with_logits or F.softplus, never log(sigmoid(x))).")
        if not math.isclose(got, value, rel_tol=1e-5, abs_tol=1e-6):
            swapped = _softplus(np.asarray(real)).mean() + _softplus(-np.asarray(fake)).mean()
            halved = math.isclose(got, value / 2, rel_tol=1e-4)
            hint = ("the average of the real and fake terms? The loss is their SUM" if halved
                    else "real and fake labels swapped? Real shapes are labelled 1, generated ones 0"
                    if math.isclose(got, swapped, rel_tol=1e-4)
                    else "targets exactly 1 (real) and 0 (fake), a mean over each batch")
            return _fail(f"{label} = {got:.6g}, expected {value:.6g} (= mean softplus(-real) + mean softplus(fake)). "
                         f"Hint: {hint}.")
    for n, (real, fake) in enumerate(cases):  # 2. gradients
        _, g_real, g_fake = _expected_d(real, fake)
        label = f"discriminator_loss(real={real}, fake={fake})"
        for key, want, side in ((f"grad_real_{n}", g_real, "real"), (f"grad_fake_{n}", g_fake, "fake")):
            verdict = _expect_hand(student, key, want, f"gradient of {label} w.r.t. the {side} logits",
                                   hint="Expected -sigmoid(-real) / B for real logits and "
                                   "sigmoid(fake) / B' for fake ones: targets 1 for real, 0 for fake (not "
                                   "smoothed above 1), a mean over each batch.")
            if not verdict.passed:
                return verdict
    return Verdict(True, "discriminator_loss matches hand-computed values and gradients")


def probe_g_cases(ctx, cases=G_CASES) -> dict:
    out = {}
    for n, fake in enumerate(cases):
        loss, (g_fake,) = _loss_call(ctx, "generator_loss", fake)
        out[f"value_{n}"], out[f"grad_fake_{n}"] = loss, g_fake
    return out


def judge_g_cases(student, reference, ctx, cases=G_CASES) -> Verdict:
    for n, fake in enumerate(cases):  # 1. values
        value, _ = _expected_g(fake)
        label = f"generator_loss(fake={fake})"
        try:
            got = scalar(student, f"value_{n}", label)
        except ValueError as err:
            return _fail(f"{err} (expected {value:.6g}; use a stable formula on logits).")
        if not math.isclose(got, value, rel_tol=1e-5, abs_tol=1e-6):
            saturating = -_softplus(np.asarray(fake)).mean()
            hint = ("that is the saturating loss mean log(1 - D(G(z))); use the non-saturating "
                    "-mean log D(G(z)) = mean softplus(-fake)" if math.isclose(got, saturating, rel_tol=1e-4)
                    else "the generator wants D to call its shapes real: target 1, mean over the batch")
            return _fail(f"{label} = {got:.6g}, expected {value:.6g}. Hint: {hint}.")
    for n, fake in enumerate(cases):  # 2. gradients
        _, grad = _expected_g(fake)
        verdict = _expect_hand(student, f"grad_fake_{n}", grad, f"gradient of generator_loss(fake={fake})",
                               hint="Expected -sigmoid(-fake) / B': the target is 1 (D should call the fakes "
                                    "real), a mean over the batch.")
        if not verdict.passed:
            return verdict
    return Verdict(True, "generator_loss matches hand-computed values and gradients")


def probe_g_nonsaturating(ctx) -> dict:
    loss, (grad,) = _loss_call(ctx, "generator_loss", [-8.0, -9.0, -10.0, -12.0])
    return {"grad": grad}


def judge_g_nonsaturating(student, reference, ctx) -> Verdict:
    try:
        grad = as_array(student.get("grad"), "gradient").astype(np.float64)
    except ValueError as err:
        return _fail(str(err))
    if grad.shape != (4,) or not np.isfinite(grad).all():
        return _fail(f"generator_loss: expected 4 finite gradients, got {describe(grad)}.")
    if np.all(grad < -0.2):  # about -1/4 each when D rejects the fakes
        return Verdict(True, "generator_loss keeps strong gradients (about -1/B) when D rejects the fakes")
    return _fail(f"generator_loss: where D confidently rejects the fakes (logits -8 .. -12) its gradients are "
                 f"{np.round(grad, 5).tolist()}, expected about -1/B = -0.25 each. The loss saturates: minimise "
                 "-log D(G(z)) (softplus(-fake)), not log(1 - D(G(z))), and point it in the right direction.")


def judge_d_extreme(student, reference, ctx) -> Verdict:
    verdict = judge_d_cases(student, reference, ctx, cases=[D_EXTREME])
    return Verdict(True, "discriminator_loss: finite, exact values and gradients for logits of +-1e4") \
        if verdict.passed else verdict


def judge_g_extreme(student, reference, ctx) -> Verdict:
    verdict = judge_g_cases(student, reference, ctx, cases=[G_EXTREME])
    return Verdict(True, "generator_loss: finite, exact values and gradients for logits of +-1e4") \
        if verdict.passed else verdict


def _random_logits(ctx, n: int, offset: int):
    torch = _torch()
    return (torch.randn(n, generator=ctx.generator(offset), dtype=torch.float64) * 4).tolist()


def probe_d_reference(ctx) -> dict:
    loss, (g_real, g_fake) = _loss_call(ctx, "discriminator_loss", _random_logits(ctx, 16, 1) + [1e4, -1e4],
                                        _random_logits(ctx, 16, 2) + [-1e4, 1e4], dtype=_torch().float32)
    return {"value": loss, "grad_real": g_real, "grad_fake": g_fake}


def judge_d_reference(student, reference, ctx) -> Verdict:
    return all_of(expect_close(student, reference, "value", "discriminator_loss on random logits", rtol=1e-5),
                  expect_close(student, reference, "grad_real", "d loss / d real_logits", rtol=1e-4, atol=1e-6),
                  expect_close(student, reference, "grad_fake", "d loss / d fake_logits", rtol=1e-4, atol=1e-6))


def probe_g_reference(ctx) -> dict:
    loss, (g_fake,) = _loss_call(ctx, "generator_loss", _random_logits(ctx, 16, 3) + [1e4, -1e4],
                                 dtype=_torch().float32)
    return {"value": loss, "grad_fake": g_fake}


def judge_g_reference(student, reference, ctx) -> Verdict:
    return all_of(expect_close(student, reference, "value", "generator_loss on random logits", rtol=1e-5),
                  expect_close(student, reference, "grad_fake", "d loss / d fake_logits", rtol=1e-4, atol=1e-6))


def _gradcheck_probe(ctx, name: str, sizes) -> dict:
    torch = _torch()
    inputs = tuple(torch.randn(n, generator=ctx.generator(i), dtype=torch.float64).mul(3).requires_grad_(True)
                   for i, n in enumerate(sizes))
    try:
        ok = torch.autograd.gradcheck(ctx.fn(name), inputs, eps=1e-6, atol=1e-5, rtol=1e-4, raise_exception=True)
        return {"ok": bool(ok), "message": ""}
    except NotImplementedError:
        raise
    except RuntimeError as err:  # gradcheck's mismatch report (autograd errors are the student's too)
        return {"ok": False, "message": str(err)[:600]}


def _judge_gradcheck(fn: str):
    def judge(student, reference, ctx) -> Verdict:
        if student.get("ok") is True:
            return Verdict(True, f"{fn}: autograd gradients match finite differences (float64)")
        return _fail(f"{fn}: torch.autograd.gradcheck failed in float64: {student.get('message', '')[:400]} "
                     "Keep everything in torch (no .item(), numpy or python floats inside), and the input's dtype.")
    return judge


def _loss_device_probe(name: str, n_inputs: int):
    def probe(ctx) -> dict:
        def call(device, dtype):
            logits = [_randn(ctx, 5, offset=i, scale=3.0, dtype=dtype).to(device) for i in range(n_inputs)]
            return ctx.fn(name)(*logits)
        return _device_probe(ctx, call)
    return probe


def _judge_scalar_device(fn: str):
    def judge(student, reference, ctx) -> Verdict:
        verdict = _judge_device(fn, student, reference, ctx)
        if verdict.passed:
            value = np.asarray(student.get("f32_value"))
            if value.shape != ():
                return _fail(f"{fn} must return a scalar (0-dim) tensor, got shape {value.shape}: average over "
                             "the batch.")
        return verdict
    return judge


# ============================================================================ accuracy and update rule
ACC_CASES = [([1.0, 2.0, -1.0, 3.0], [-1.0, -2.0, 0.5, -3.0], 0.75),
             ([0.3, 0.2], [-0.1, -5.0], 1.0),
             ([-0.3, -0.2, -1.0], [0.1, 5.0, 2.0], 0.0),
             ([5.0, -4.0, 3.0, 2.0, 1.0], [2.0, -1.0, -3.0, 4.0, -2.0], 0.7)]


def _float_or_none(value):
    torch = _torch()
    try:
        if torch.is_tensor(value):
            return float(value.detach().cpu().reshape(()))
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def probe_acc_cases(ctx) -> dict:
    torch = _torch()
    return {f"acc_{n}": _float_or_none(ctx.fn("discriminator_accuracy")(torch.tensor(r), torch.tensor(f)))
            for n, (r, f, _) in enumerate(ACC_CASES)}


def judge_acc_cases(student, reference, ctx) -> Verdict:
    for n, (real, fake, want) in enumerate(ACC_CASES):
        got = student.get(f"acc_{n}")
        label = f"discriminator_accuracy(real={real}, fake={fake})"
        if not isinstance(got, (int, float)) or not math.isfinite(got):
            return _fail(f"{label} returned {got!r}, expected the number {want}.")
        if abs(got - want) > 1e-6:
            hint = (" That is 1 - accuracy: a real shape is classified correctly when its logit is > 0, a fake "
                    "one when its logit is < 0." if abs(got - (1 - want)) < 1e-6 else
                    " Count correct real (logit > 0) and fake (logit < 0) shapes, divide by all shapes.")
            return _fail(f"{label} = {got:.4g}, expected {want}.{hint}")
    return Verdict(True, "discriminator_accuracy matches hand-computed cases")


def probe_acc_reference(ctx) -> dict:
    # shifted apart (a half-trained D), so the accuracy is far from 1/2 and a flipped rule (1 - accuracy)
    # can never agree with the reference by chance
    real = [x + 3.0 for x in _random_logits(ctx, 64, 5)]
    fake = [x - 3.0 for x in _random_logits(ctx, 64, 6)]
    torch = _torch()
    return {"acc": _float_or_none(ctx.fn("discriminator_accuracy")(torch.tensor(real), torch.tensor(fake)))}


def judge_acc_reference(student, reference, ctx) -> Verdict:
    got, want = student.get("acc"), reference.get("acc")
    if isinstance(got, (int, float)) and abs(got - want) < 1e-6:
        return Verdict(True, "discriminator_accuracy matches the reference on random logits")
    return _fail(f"discriminator_accuracy on 64 random real and 64 random fake logits returned {got!r}, "
                 f"the reference {want:.6g}.")


def probe_acc_device(ctx) -> dict:
    torch = _torch()
    real, fake = _random_logits(ctx, 16, 7), _random_logits(ctx, 16, 8)
    fn = ctx.fn("discriminator_accuracy")
    on_device = fn(torch.tensor(real, device=ctx.device), torch.tensor(fake, device=ctx.device))
    return {"device": _float_or_none(on_device), "cpu": _float_or_none(fn(torch.tensor(real), torch.tensor(fake)))}


def judge_acc_device(student, reference, ctx) -> Verdict:
    got, want = student.get("device"), student.get("cpu")
    if isinstance(got, (int, float)) and isinstance(want, (int, float)) and abs(got - want) < 1e-9:
        return Verdict(True, f"discriminator_accuracy works on {ctx.device}")
    return _fail(f"discriminator_accuracy on {ctx.device} returned {got!r}, on cpu {want!r}: they should agree "
                 "(and be a number).")


UPDATE_CASES = [((0.5, 0.8), True), ((0.9, 0.8), False), ((0.79, 0.8), True), ((0.81, 0.8), False),
                ((0.6, 0.5), False), ((0.4, 0.5), True), ((0.95, 0.99), True), ((1.0, 0.9), False),
                ((0.0, 0.2), True), ((0.7, 0.6), False)]  # ((accuracy, threshold), update?)
UPDATE_DEFAULT = [(0.7, True), (0.85, False), (0.05, True), (0.99, False)]


def _as_bool(value):
    torch = _torch()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if torch.is_tensor(value) and value.numel() == 1 and value.dtype == torch.bool:
        return bool(value)
    return f"<{type(value).__name__}: {value!r:.40}>"


def probe_update_cases(ctx) -> dict:
    torch = _torch()
    fn = ctx.fn("should_update_discriminator")
    out = {f"case_{n}": _as_bool(fn(acc, thr)) for n, ((acc, thr), _) in enumerate(UPDATE_CASES)}
    out.update({f"default_{n}": _as_bool(fn(acc)) for n, (acc, _) in enumerate(UPDATE_DEFAULT)})
    out["tensor"] = _as_bool(fn(torch.tensor(0.9), 0.8))
    return out


def judge_update_cases(student, reference, ctx) -> Verdict:
    cases = [(f"case_{n}", acc, thr, f"should_update_discriminator({acc}, threshold={thr})")
             for n, ((acc, thr), _) in enumerate(UPDATE_CASES)]
    cases += [(f"default_{n}", acc, 0.8, f"should_update_discriminator({acc}) (default threshold 0.8)")
              for n, (acc, _) in enumerate(UPDATE_DEFAULT)]
    cases.append(("tensor", 0.9, 0.8, "should_update_discriminator(torch.tensor(0.9), 0.8)"))
    answers = [student.get(key) for key, *_ in cases]
    for (key, acc, thr, label), got in zip(cases, answers):
        if not isinstance(got, bool):
            return _fail(f"{label} returned {got}, expected the python bool {acc <= thr}.")
    if all(answers):
        return _fail("should_update_discriminator always says True: D must skip its update while its accuracy is "
                     "above the threshold (e.g. 0.9 > 0.8 -> False).")
    for (key, acc, thr, label), got in zip(cases, answers):
        if got != (acc <= thr):
            if all(a == (c[1] > c[2]) for a, c in zip(answers, cases)):
                hint = "the rule is inverted: update D only while it is NOT too strong (accuracy <= threshold)"
            elif all(a == (c[1] <= 0.8) for a, c in zip(answers, cases)):
                hint = "the threshold argument is ignored (a hard-coded 0.8?)"
            else:
                hint = "update D exactly when accuracy <= threshold"
            return _fail(f"{label} returned {got}, expected {acc <= thr}: {hint}.")
    return Verdict(True, "should_update_discriminator follows the 80% rule and its threshold argument")


def probe_update_reference(ctx) -> dict:
    torch = _torch()
    fn = ctx.fn("should_update_discriminator")
    acc = torch.rand(40, generator=ctx.generator(9), dtype=torch.float64)
    thr = torch.rand(40, generator=ctx.generator(10), dtype=torch.float64)
    keep = (acc - thr).abs() > 1e-3  # away from the boundary
    return {"decisions": [_as_bool(fn(float(a), float(t))) for a, t in zip(acc[keep], thr[keep])]}


def judge_update_reference(student, reference, ctx) -> Verdict:
    if student.get("decisions") == reference.get("decisions"):
        return Verdict(True, "should_update_discriminator agrees with the reference on random accuracies")
    return _fail("should_update_discriminator disagrees with the reference on random (accuracy, threshold) pairs: "
                 "update D exactly when accuracy <= threshold.")


# ============================================================================ interpolate_latents
def _interp(ctx, z0, z1, steps, mode):
    return ctx.fn("interpolate_latents")(z0, z1, steps, mode=mode)


def probe_interp_endpoints(ctx) -> dict:
    z0, z1 = _randn(ctx, 16, offset=1), _randn(ctx, 16, offset=2)
    b0, b1 = _randn(ctx, 3, 8, offset=3), _randn(ctx, 3, 8, offset=4)
    out = {"z0": z0, "z1": z1, "b0": b0, "b1": b1}
    for mode in ("lerp", "slerp"):
        out[f"{mode}_single"] = _interp(ctx, z0, z1, 7, mode)
        out[f"{mode}_batch"] = _interp(ctx, b0, b1, 5, mode)
    return out


def judge_interp_endpoints(student, reference, ctx) -> Verdict:
    for mode in ("lerp", "slerp"):
        for key, a, b, shape in ((f"{mode}_single", "z0", "z1", (7, 16)), (f"{mode}_batch", "b0", "b1", (5, 3, 8))):
            label = f"interpolate_latents(z0 {shape[1:]}, z1, steps={shape[0]}, mode='{mode}')"
            try:
                got = as_array(student.get(key), label).astype(np.float64)
            except ValueError as err:
                return _fail(str(err))
            if got.shape != shape:
                return _fail(f"{label}: expected shape {shape} (steps first), got {got.shape}.")
            z0, z1 = np.asarray(student[a], np.float64), np.asarray(student[b], np.float64)
            if not (np.allclose(got[0], z0, atol=1e-5) and np.allclose(got[-1], z1, atol=1e-5)):
                hint = (" The path runs backwards (t = 1 at the start)." if np.allclose(got[0], z1, atol=1e-5)
                        else " Use t = torch.linspace(0, 1, steps): both endpoints included.")
                return _fail(f"{label}: the path must start at z0 and end at z1.{hint}")
    return Verdict(True, "interpolate_latents: (steps, ..., Z) paths from z0 to z1 in both modes")


def probe_interp_geometry(ctx) -> dict:
    torch = _torch()
    z0, z1 = _randn(ctx, 32, offset=5, dtype=torch.float64), _randn(ctx, 32, offset=6, dtype=torch.float64)
    z1 = z1 / z1.norm() * z0.norm()  # the same norm
    return {"z0": z0, "z1": z1, "slerp": _interp(ctx, z0, z1, 9, "slerp"), "lerp": _interp(ctx, z0, z1, 9, "lerp")}


def judge_interp_geometry(student, reference, ctx) -> Verdict:
    try:
        z0, z1 = np.asarray(student["z0"], np.float64), np.asarray(student["z1"], np.float64)
        slerp = as_array(student.get("slerp"), "slerp path").astype(np.float64)
        lerp = as_array(student.get("lerp"), "lerp path").astype(np.float64)
    except (KeyError, ValueError) as err:
        return _fail(str(err))
    if slerp.shape != (9, 32) or lerp.shape != (9, 32):
        return _fail(f"interpolate_latents(z0 (32,), z1, 9): expected (9, 32) paths, got {slerp.shape}, {lerp.shape}.")
    t = np.linspace(0, 1, 9)[:, None]
    want_lerp = (1 - t) * z0 + t * z1
    if not np.allclose(lerp, want_lerp, atol=1e-6):
        return _fail("interpolate_latents(mode='lerp') must return (1 - t) z0 + t z1 at t = linspace(0, 1, steps).")
    radius = np.linalg.norm(z0)
    norms = np.linalg.norm(slerp, axis=1)
    if not np.allclose(norms, radius, rtol=1e-5):
        hint = " That is lerp: slerp must follow the great circle." if np.allclose(slerp, want_lerp, atol=1e-6) else ""
        return _fail(f"interpolate_latents(mode='slerp') between two latents of norm {radius:.4f} must keep that "
                     f"norm at every step; got norms {np.round(norms, 4).tolist()}.{hint}")
    omega = math.acos(float(np.clip(z0 @ z1 / radius**2, -1, 1)))
    want = (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / math.sin(omega)
    if not np.allclose(slerp, want, atol=1e-6):
        return _fail("interpolate_latents(mode='slerp') keeps the norm but is not the constant-speed great-circle "
                     "path sin((1 - t) W) / sin W z0 + sin(t W) / sin W z1.")
    return Verdict(True, "interpolate_latents: lerp is the straight line; slerp keeps the norm on the great circle")


def probe_interp_parallel(ctx) -> dict:
    torch = _torch()
    z0 = _randn(ctx, 16, offset=7)
    exact = torch.full((16,), 0.5)  # cos W is exactly 1 in float32 here, so sin W is exactly 0
    return {"z0": z0, "same": _interp(ctx, z0, z0.clone(), 5, "slerp"), "double": _interp(ctx, z0, 2 * z0, 5, "slerp"),
            "exact": exact, "exact_same": _interp(ctx, exact, exact.clone(), 5, "slerp"),
            "exact_double": _interp(ctx, exact, 2 * exact, 5, "slerp")}


def judge_interp_parallel(student, reference, ctx) -> Verdict:
    try:
        z0 = np.asarray(student["z0"], np.float64)
        same = as_array(student.get("same"), "slerp(z, z)").astype(np.float64)
        double = as_array(student.get("double"), "slerp(z, 2z)").astype(np.float64)
        exact = [as_array(student.get(k), f"slerp of exactly parallel latents ({k})") for k in ("exact_same",
                                                                                              "exact_double")]
    except (KeyError, ValueError) as err:
        return _fail(str(err))
    if not (np.isfinite(same).all() and np.isfinite(double).all() and all(np.isfinite(e).all() for e in exact)):
        return _fail("interpolate_latents(z, z, mode='slerp') (or z -> 2z) gave NaN/inf: sin W = 0 for parallel "
                     "latents; fall back to lerp where sin W < SLERP_EPS, and clamp cos W to [-1, 1].")
    t = np.linspace(0, 1, 5)[:, None]
    if not (np.allclose(same, np.broadcast_to(z0, same.shape), atol=1e-5)
            and np.allclose(double, (1 + t) * z0, atol=1e-4)):
        return _fail("interpolate_latents(mode='slerp') between parallel latents must reduce to lerp "
                     "(z -> z stays at z; z -> 2z gives (1 + t) z).")
    return Verdict(True, "interpolate_latents: slerp between parallel latents is finite and reduces to lerp")


def probe_interp_reference(ctx) -> dict:
    torch = _torch()
    b0, b1 = _randn(ctx, 4, 24, offset=11), _randn(ctx, 4, 24, offset=12) * 1.5  # unequal norms
    b0, b1 = b0.requires_grad_(True), b1.requires_grad_(True)
    out = {}
    for mode in ("lerp", "slerp"):
        path = _interp(ctx, b0, b1, 6, mode)
        weights = torch.randn(path.shape, generator=ctx.generator(13))
        g0, g1 = torch.autograd.grad((path * weights).sum(), (b0, b1))
        out.update({f"{mode}": path, f"{mode}_g0": g0, f"{mode}_g1": g1})
    return out


def judge_interp_reference(student, reference, ctx) -> Verdict:
    verdicts = []
    for mode in ("lerp", "slerp"):
        verdicts.append(expect_close(student, reference, mode, f"{mode} path between random latents", rtol=1e-4,
                                     atol=1e-5, hint="Use the formula of the docstring (angle from the normalised "
                                     "dot product)."))
        verdicts.append(expect_close(student, reference, f"{mode}_g0", f"gradient of the {mode} path w.r.t. z0",
                                     rtol=1e-3, atol=1e-4))
        verdicts.append(expect_close(student, reference, f"{mode}_g1", f"gradient of the {mode} path w.r.t. z1",
                                     rtol=1e-3, atol=1e-4))
    return all_of(*verdicts)


def probe_interp_gradcheck(ctx) -> dict:
    torch = _torch()
    fn = ctx.fn("interpolate_latents")
    z0 = torch.randn(2, 4, generator=ctx.generator(14), dtype=torch.float64).requires_grad_(True)
    z1 = torch.randn(2, 4, generator=ctx.generator(15), dtype=torch.float64).requires_grad_(True)
    try:
        ok = torch.autograd.gradcheck(lambda a, b: fn(a, b, 4, mode="slerp"), (z0, z1), eps=1e-6, atol=1e-5,
                                      rtol=1e-4, raise_exception=True)
        return {"ok": bool(ok), "message": ""}
    except NotImplementedError:
        raise
    except RuntimeError as err:
        return {"ok": False, "message": str(err)[:600]}


def probe_interp_device(ctx) -> dict:
    def call(device, dtype):
        z0 = _randn(ctx, 3, 8, offset=16, dtype=dtype).to(device)
        z1 = _randn(ctx, 3, 8, offset=17, dtype=dtype).to(device)
        return ctx.fn("interpolate_latents")(z0, z1, 4, mode="slerp")
    return _device_probe(ctx, call)


# ============================================================================ quality
QUALITY_SEED = 1234


def probe_quality(ctx) -> dict:
    """Train the student's G and D with the kit's loop on a fixed budget; return raw samples on the
    evaluation latents (the judge scores them in the parent, never here)."""
    import time

    from gen3d import hw_voxel_gan as hw

    torch = _torch()
    cfg = hw.GRADER
    torch.manual_seed(cfg.seed)
    gen = ctx.fn("VoxelGenerator")(cfg.z_dim, cfg.resolution, cfg.base_channels)
    disc = ctx.fn("VoxelDiscriminator")(cfg.resolution, cfg.base_channels)
    train = hw.load_shapes(cfg.resolution, "train")
    start = time.time()
    history = hw.train_gan(gen.to(ctx.device), disc.to(ctx.device), train.voxels, cfg,
                           discriminator_loss=ctx.fn("discriminator_loss"), generator_loss=ctx.fn("generator_loss"),
                           discriminator_accuracy=ctx.fn("discriminator_accuracy"),
                           should_update_discriminator=ctx.fn("should_update_discriminator"),
                           device=ctx.device, progress=False)
    samples = hw.generate(gen, _quality_latents())
    return {"samples": samples, "seconds": time.time() - start,
            "d_update_fraction": float(np.mean(history.d_updated))}


def _quality_latents():
    from gen3d import hw_voxel_gan as hw

    cfg = hw.GRADER
    return hw.evaluation_latents(cfg.n_eval, cfg.z_dim, cfg.seed)


@functools.lru_cache(maxsize=1)
def _quality_evaluator():
    """The held-out set and feature classifier, loaded once in the parent."""
    from gen3d import hw_voxel_gan as hw

    cfg = hw.GRADER
    return hw.Evaluator(hw.load_shapes(cfg.resolution, "test"), cfg.n_eval, cfg.z_dim, seed=cfg.seed)


def _score_samples(output, label: str) -> dict:
    """COV, 1-NNA and category coverage of a probe's raw samples, computed here in the parent."""
    import torch

    from gen3d import hw_voxel_gan as hw

    cfg = hw.GRADER
    samples = as_array(output.get("samples"), f"{label} samples")
    want = (cfg.n_eval, 1, cfg.resolution, cfg.resolution, cfg.resolution)
    if samples.shape != want:
        raise ValueError(f"{label} samples: expected shape {want}, got {samples.shape}")
    if not np.isfinite(samples).all() or samples.min() < 0 or samples.max() > 1:
        raise ValueError(f"{label} samples must be finite occupancies in [0, 1] "
                         f"(range {np.nanmin(samples):.3g}..{np.nanmax(samples):.3g})")
    return _quality_evaluator().score(torch.as_tensor(samples, dtype=torch.float32))


QUALITY_MARGINS = {"one_nna": 0.10, "category_coverage": 0.2, "coverage": 0.12}


def judge_quality(student, reference, ctx) -> Verdict:
    try:
        got = _score_samples(student, "your")
        want = _score_samples(reference, "the reference's")
    except ValueError as err:
        return _fail(f"the quality run did not produce usable samples: {err}")
    report = ", ".join(f"{k} {got[k]:.3f} (reference {want[k]:.3f})" for k in QUALITY_MARGINS)
    problems = []
    if got["one_nna"] > want["one_nna"] + QUALITY_MARGINS["one_nna"]:
        problems.append("1-NNA is higher (samples easier to tell from real shapes)")
    for key in ("category_coverage", "coverage"):
        if got[key] < want[key] - QUALITY_MARGINS[key]:
            problems.append(f"{key} is lower (fewer categories/shapes covered: mode collapse?)")
    if problems:
        return Verdict(False, f"after the same training budget as the reference: {report}. " + "; ".join(problems)
                       + ". Check the loss directions, the non-saturating generator loss, the update rule and "
                         "BatchNorm in training mode.", fraction=1 - len(problems) / len(QUALITY_MARGINS))
    return Verdict(True, f"training quality on a fixed budget (scored by the grader): {report}")


def figure_quality(student, reference, ctx) -> list:
    """The student's samples beside the reference's (same latents, same budget) for the HTML report."""
    from gen3d import viz

    figures = [("your samples (fixed latents, after the grader's training budget)",
                viz.voxel_grid_figure(as_array(student.get("samples"), "samples")[:16], nrow=8, size=48))]
    if reference is not None:
        figures.append(("the reference's samples (same latents, same budget)",
                        viz.voxel_grid_figure(as_array(reference.get("samples"), "samples")[:16], nrow=8, size=48)))
    return figures


# ============================================================================ the topic
def _checks() -> list:
    g, d = "VoxelGenerator", "VoxelDiscriminator"
    return [
        Check(f"{g}.shape_range", g, "shape", probe_generator_shapes, judge_generator_shapes, needs_reference=False),
        Check(f"{g}.upsampling_stages", g, "shape", probe_generator_stages, judge_generator_stages,
              needs_reference=False),
        Check(f"{g}.channels", g, "shape", probe_generator_channels, judge_generator_channels, needs_reference=False),
        Check(f"{g}.batchnorm_train", g, "value", probe_generator_batchnorm, _judge_batchnorm(g, 2),
              needs_reference=False),
        Check(f"{g}.gradients", g, "gradient", probe_generator_gradients,
              lambda s, r, c: _judge_gradients(g, s, r, c), needs_reference=False),
        Check(f"{g}.parameter_count", g, "shape", probe_generator_params, _judge_param_count(g)),
        Check(f"{g}.device", g, "device", probe_generator_device, lambda s, r, c: _judge_device(g, s, r, c),
              needs_reference=False),
        Check(f"{g}.quality", g, "quality", probe_quality, judge_quality, points=3.0, timeout=240.0,
              fixed_seed=QUALITY_SEED, figure=figure_quality),
        Check(f"{d}.shape", d, "shape", probe_discriminator_shapes, judge_discriminator_shapes, needs_reference=False),
        Check(f"{d}.downsampling_stages", d, "shape", probe_discriminator_stages, judge_discriminator_stages,
              needs_reference=False),
        Check(f"{d}.logits", d, "value", probe_discriminator_separates, judge_discriminator_separates,
              needs_reference=False),
        Check(f"{d}.batchnorm_train", d, "value", probe_discriminator_batchnorm, _judge_batchnorm(d, 1),
              needs_reference=False),
        Check(f"{d}.gradients", d, "gradient", probe_discriminator_gradients,
              lambda s, r, c: _judge_gradients(d, s, r, c), needs_reference=False),
        Check(f"{d}.parameter_count", d, "shape", probe_discriminator_params, _judge_param_count(d)),
        Check(f"{d}.device", d, "device", probe_discriminator_device, lambda s, r, c: _judge_device(d, s, r, c),
              needs_reference=False),
        Check("discriminator_loss.hand_cases", "discriminator_loss", "value", probe_d_cases, judge_d_cases,
              needs_reference=False),
        Check("discriminator_loss.extreme_logits", "discriminator_loss", "robustness",
              lambda ctx: probe_d_cases(ctx, [D_EXTREME]), judge_d_extreme, needs_reference=False),
        Check("discriminator_loss.matches_reference", "discriminator_loss", "value", probe_d_reference,
              judge_d_reference),
        Check("discriminator_loss.gradcheck", "discriminator_loss", "gradient",
              lambda ctx: _gradcheck_probe(ctx, "discriminator_loss", (4, 3)), _judge_gradcheck("discriminator_loss"),
              needs_reference=False),
        Check("discriminator_loss.device", "discriminator_loss", "device", _loss_device_probe("discriminator_loss", 2),
              _judge_scalar_device("discriminator_loss"), needs_reference=False),
        Check("generator_loss.hand_cases", "generator_loss", "value", probe_g_cases, judge_g_cases,
              needs_reference=False),
        Check("generator_loss.non_saturating", "generator_loss", "gradient", probe_g_nonsaturating,
              judge_g_nonsaturating, needs_reference=False),
        Check("generator_loss.extreme_logits", "generator_loss", "robustness",
              lambda ctx: probe_g_cases(ctx, [G_EXTREME]), judge_g_extreme, needs_reference=False),
        Check("generator_loss.matches_reference", "generator_loss", "value", probe_g_reference, judge_g_reference),
        Check("generator_loss.gradcheck", "generator_loss", "gradient",
              lambda ctx: _gradcheck_probe(ctx, "generator_loss", (5,)), _judge_gradcheck("generator_loss"),
              needs_reference=False),
        Check("generator_loss.device", "generator_loss", "device", _loss_device_probe("generator_loss", 1),
              _judge_scalar_device("generator_loss"), needs_reference=False),
        Check("discriminator_accuracy.hand_cases", "discriminator_accuracy", "value", probe_acc_cases,
              judge_acc_cases, needs_reference=False),
        Check("discriminator_accuracy.matches_reference", "discriminator_accuracy", "value", probe_acc_reference,
              judge_acc_reference),
        Check("discriminator_accuracy.device", "discriminator_accuracy", "device", probe_acc_device,
              judge_acc_device, needs_reference=False),
        Check("should_update_discriminator.hand_cases", "should_update_discriminator", "value", probe_update_cases,
              judge_update_cases, needs_reference=False),
        Check("should_update_discriminator.matches_reference", "should_update_discriminator", "value",
              probe_update_reference, judge_update_reference),
        Check("interpolate_latents.endpoints", "interpolate_latents", "shape", probe_interp_endpoints,
              judge_interp_endpoints, needs_reference=False),
        Check("interpolate_latents.geometry", "interpolate_latents", "value", probe_interp_geometry,
              judge_interp_geometry, needs_reference=False),
        Check("interpolate_latents.parallel", "interpolate_latents", "robustness", probe_interp_parallel,
              judge_interp_parallel, needs_reference=False),
        Check("interpolate_latents.matches_reference", "interpolate_latents", "value", probe_interp_reference,
              judge_interp_reference),
        Check("interpolate_latents.gradcheck", "interpolate_latents", "gradient", probe_interp_gradcheck,
              _judge_gradcheck("interpolate_latents"), needs_reference=False),
        Check("interpolate_latents.device", "interpolate_latents", "device", probe_interp_device,
              lambda s, r, c: _judge_device("interpolate_latents", s, r, c), needs_reference=False),
    ]


TOPIC = Topic(name="01_voxel_gan", notebook="solutions/01_voxel_gan/voxel_gan.ipynb", functions=FUNCTIONS,
              checks=_checks())
