"""Checks of topic 03 (a VQ-VAE of voxel patches and an autoregressive transformer prior).

Public checks (``needs_reference=False``) use hand cases and invariants: quantisation against brute force
(computed here, in the parent), the straight-through gradient and the gradients of the VQ loss against
their closed forms, a collapsed codebook that dead-code restarts must revive, the causal mask and "changing
future tokens leaves past logits unchanged", and chi-square tests of sampling and completion against a
fixed tiny prior whose distribution is known exactly. Hidden checks compare with the reference on fresh
random inputs; two quality checks train the student's VQ-VAE (and prior) on a fixed budget with
``gen3d.hw_vq_prior`` and the judge scores the raw reconstructions / samples with ``gen3d.metrics``.
"""
from __future__ import annotations

import math

import numpy as np

from autograder.spec import (Topic, Verdict, all_of, as_array, describe, expect_close, make_check,
                             tensor_problem)

try:  # optimizers import torch._dynamo lazily; import it before the child drops privileges
    import torch._dynamo  # noqa: F401
except Exception:  # noqa: BLE001
    pass

FUNCTIONS = ["nearest_code", "VectorQuantizer", "codebook_perplexity", "PatchEncoder", "PatchDecoder", "VQVAE",
             "encode_dataset", "causal_mask", "CausalSelfAttention", "TransformerPrior", "sample_tokens",
             "complete_tokens"]
QUALITY_SEED = 1234
N_DRAWS = 20000           # samples of the statistical tests
CHI2_ALPHA = 1e-9         # false-failure probability of one chi-square test (a few per check)
MIN_EXPECTED = 5.0        # cells with fewer expected counts are pooled (chi-square approximation)


# ============================================================================ probe helpers (child side)
def _torch():
    import torch

    return torch


def _seed(ctx, offset: int = 0) -> None:
    _torch().manual_seed((ctx.seed + 104729 * offset) % (2**31))


def _randn(ctx, *shape, offset=0, dtype=None):
    torch = _torch()
    return torch.randn(*shape, generator=ctx.generator(offset), dtype=torch.float64).to(dtype or torch.float32)


def _voxels(ctx, n, r, offset=0, fill=0.3):
    torch = _torch()
    return (torch.rand(n, 1, r, r, r, generator=ctx.generator(offset)) < fill).float()


def _device_probe(run):
    """``run(ctx, torch)`` returns (outputs, wanted dtypes as strings); report devices and dtypes."""
    def probe(ctx):
        torch = _torch()
        outs, dtypes = run(ctx, torch)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        if not all(torch.is_tensor(o) for o in outs):
            return {"problem": f"{ctx.device}: expected tensors, got {[type(o).__name__ for o in outs]}"}
        return {"devices": [o.device.type for o in outs], "dtypes": [str(o.dtype) for o in outs],
                "want_dtypes": list(dtypes), "want_device": ctx.device.type,
                "finite": all(bool(torch.isfinite(o.float()).all()) for o in outs if o.is_floating_point())}
    return probe


def _judge_device(function):
    def judge(student, reference, ctx):
        if set(student["devices"]) != {student["want_device"]}:
            return Verdict(False, f"{function}: inputs on {student['want_device']} gave outputs on {student['devices']}; "
                                  "create new tensors with device= of the inputs (or *_like), never .cpu()/.cuda()")
        if list(student["dtypes"]) != list(student["want_dtypes"]):
            return Verdict(False, f"{function}: expected output dtypes {student['want_dtypes']}, got "
                                  f"{student['dtypes']} (keep the input dtype; indices are int64)")
        if not student["finite"]:
            return Verdict(False, f"{function}: outputs on {student['want_device']} contain NaN/inf")
        return Verdict(True, f"{function} keeps device {student['want_device']} and dtypes {student['dtypes']}")
    return judge


def _reference_close(function, key, label, rtol=1e-4, atol=1e-5, hint=""):
    def judge(student, reference, ctx):
        return expect_close(student, reference, key, f"{function}: {label}", rtol, atol, hint)
    return judge


def _reference_equal(function, key, label, hint=""):
    def judge(student, reference, ctx):
        try:
            got, want = as_array(student.get(key), label), as_array(reference.get(key), f"reference {label}")
        except ValueError as err:
            return Verdict(False, f"{function}: {err}")
        if got.shape != want.shape:
            return Verdict(False, f"{function}: {label} has shape {got.shape}, the reference {want.shape}. {hint}")
        bad = int((got != want).sum())
        if bad:
            first = np.argwhere(got != want)[0]
            return Verdict(False, f"{function}: {label} differs from the reference in {bad} of {got.size} entries "
                                  f"(first at {tuple(int(i) for i in first)}: got {got[tuple(first)]}, expected "
                                  f"{want[tuple(first)]}). {hint}".strip())
        return Verdict(True, f"{function}: {label} equals the reference")
    return judge


def _gradient_probe(model, loss_fn):
    """Which parameters get a finite gradient from ``loss_fn(model)``."""
    torch = _torch()
    model.train()
    loss_fn(model).backward()
    missing, bad, zero = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.grad is None:
            missing.append(name)
        elif not torch.isfinite(param.grad).all():
            bad.append(name)
        elif param.dim() > 1 and float(param.grad.abs().max()) == 0.0:
            zero.append(name)
    return {"missing": missing, "nonfinite": bad, "zero": zero, "n_params": len(list(model.parameters()))}


def _judge_gradients(function):
    def judge(student, reference, ctx):
        if student.get("missing"):
            return Verdict(False, f"{function}: no gradient reaches {student['missing'][:4]}: a layer built in "
                                  "__init__ but unused in forward, or a detached activation?")
        if student.get("nonfinite"):
            return Verdict(False, f"{function}: non-finite gradients in {student['nonfinite'][:4]}")
        if student.get("zero"):
            return Verdict(False, f"{function}: all-zero gradients for {student['zero'][:4]}")
        return Verdict(True, f"{function}: gradients reach all {student.get('n_params')} parameter tensors")
    return judge


def _layer_shapes(model, x, kinds):
    """Output shapes (C, D, H, W) of every module of the given torch.nn types, in call order."""
    torch = _torch()
    seen = []
    types = tuple(getattr(torch.nn, k) for k in kinds)
    for module in model.modules():
        if isinstance(module, types):
            module.register_forward_hook(lambda m, i, o: seen.append([type(m).__name__] + list(o.shape[1:])))
    with torch.no_grad():
        model(x)
    return {"layers": seen}


# ============================================================================ statistics (parent side)
def _chi2(counts, probs, label):
    """A Verdict from a chi-square goodness-of-fit test (cells pooled below MIN_EXPECTED)."""
    from scipy import stats

    counts, probs = np.asarray(counts, np.float64).ravel(), np.asarray(probs, np.float64).ravel()
    n = counts.sum()
    expected = probs * n
    impossible = (probs <= 0) & (counts > 0)
    if impossible.any():
        return Verdict(False, f"{label}: {int(counts[impossible].sum())} of {int(n)} samples fall on outcomes of "
                              "probability 0 (outside the top-k, or impossible under the prior)")
    big = expected >= MIN_EXPECTED
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    stat = float(((obs - exp) ** 2 / exp).sum())
    df = max(1, len(obs) - 1)
    critical = float(stats.chi2.isf(CHI2_ALPHA, df))
    if stat > critical:
        worst = int(np.argmax(np.abs(counts - expected)))
        return Verdict(False, f"{label}: the samples do not follow the model's distribution (chi-square {stat:.0f} on "
                              f"{df} degrees of freedom, critical value {critical:.0f} at p = {CHI2_ALPHA:g}; e.g. "
                              f"outcome #{worst} drawn {int(counts[worst])} times, expected {expected[worst]:.0f})")
    return Verdict(True, f"{label}: chi-square {stat:.1f} <= {critical:.1f} ({df} dof)")


def _softmax(logits, axis=-1):
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _step_probs(table, t, prev, temperature=1.0, top_k=None):
    """p(x_t | x_{t-1} = prev) of the table prior: table (T, V + 1, V) logits, prev = V for the start."""
    logits = np.asarray(table, np.float64)[t, prev] / temperature
    if top_k is not None:
        kth = np.sort(logits)[::-1][top_k - 1]
        logits = np.where(logits < kth, -np.inf, logits)
    return _softmax(logits)


def _joint_probs(table, temperature=1.0, top_k=None):
    """(V,) * T joint distribution of the table prior's sequences (raster product)."""
    table = np.asarray(table, np.float64)
    seq_len, v = table.shape[0], table.shape[2]
    joint = np.ones([v] * seq_len)
    for idx in np.ndindex(*joint.shape):
        prev = v
        p = 1.0
        for t, x in enumerate(idx):
            p *= _step_probs(table, t, prev, temperature, top_k)[x]
            prev = x
        joint[idx] = p
    return joint


def _counts(samples, v, seq_len):
    samples = np.asarray(samples, np.int64).reshape(-1, seq_len)
    if samples.size and (samples.min() < 0 or samples.max() >= v):
        return None
    flat = np.ravel_multi_index(samples.T, [v] * seq_len) if samples.size else np.zeros(0, np.int64)
    return np.bincount(flat, minlength=v ** seq_len).reshape([v] * seq_len)


# ============================================================================ the tiny fixed prior (child side)
TABLE_V, TABLE_T = 4, 3


def _table(ctx, offset=0, scale=1.0):
    torch = _torch()
    return (2 * torch.rand(TABLE_T, TABLE_V + 1, TABLE_V, generator=ctx.generator(900 + offset),
                           dtype=torch.float64) - 1) * scale


def _table_prior(table, device=None):
    """A prior whose logits for x_t depend only on (t, x_{t-1}): table (T, V + 1, V), row V = the start token."""
    torch = _torch()

    class TablePrior(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Parameter(table.clone().float(), requires_grad=False)
            self.seq_len, self.vocab_size = table.shape[0], table.shape[2]

        def forward(self, tokens):
            if tokens.dim() != 2 or not 1 <= tokens.shape[1] <= self.seq_len:
                raise ValueError(f"the prior takes (B, L) tokens with 1 <= L <= {self.seq_len}, got "
                                 f"{tuple(tokens.shape)}")
            b, length = tokens.shape
            start = torch.full((b, 1), self.vocab_size, dtype=torch.long, device=tokens.device)
            prev = torch.cat([start, tokens[:, :-1].long()], dim=1)  # (B, L)
            steps = torch.arange(length, device=tokens.device)[None].expand(b, -1)
            return self.table[steps, prev]  # (B, L, V)

    prior = TablePrior()
    return prior.to(device) if device is not None else prior


def _sample(ctx, temperature=1.0, top_k=None, offset=0, scale=1.0):
    torch = _torch()
    table = _table(ctx, offset, scale)
    prior = _table_prior(table)
    g = torch.Generator().manual_seed(ctx.seed + 31 * offset + 7)
    out = ctx.fn("sample_tokens")(prior, N_DRAWS, temperature=temperature, top_k=top_k, generator=g)
    problem = tensor_problem(out, (N_DRAWS, TABLE_T), f"sample_tokens(prior, n={N_DRAWS})")
    if problem:
        return {"problem": problem}
    return {"table": table, "samples": out.to(torch.int64)}


# ============================================================================ nearest_code
def _codebook(ctx, k, c, offset):
    """Codes with very different norms (so that forgetting ||e||^2 changes the answer)."""
    torch = _torch()
    g = ctx.generator(offset)
    return torch.randn(k, c, generator=g, dtype=torch.float64) * (0.2 + 2 * torch.rand(k, 1, generator=g, dtype=torch.float64))


def probe_nearest_brute(ctx):
    torch = _torch()
    z = torch.randn(300, 5, generator=ctx.generator(1), dtype=torch.float64) * 1.5
    codebook = _codebook(ctx, 17, 5, 2)
    fn = ctx.fn("nearest_code")
    out = {"z": z, "codebook": codebook}
    for tag, chunk in (("default", None), ("chunk7", 7), ("chunk64", 64), ("chunk1000", 1000)):
        idx = fn(z, codebook) if chunk is None else fn(z, codebook, chunk=chunk)
        call = f"nearest_code(z (300, 5), codebook (17, 5){'' if chunk is None else f', chunk={chunk}'})"
        problem = tensor_problem(idx, (300,), call)
        if problem:
            return {"problem": problem}
        if idx.dtype != torch.int64:
            return {"problem": f"nearest_code should return int64 indices, got {idx.dtype}"}
        out[tag] = idx
    return out


def judge_nearest_brute(student, reference, ctx):
    z, codebook = np.asarray(student["z"]), np.asarray(student["codebook"])
    dist = ((z[:, None, :] - codebook[None]) ** 2).sum(-1)  # (N, K)
    best = dist.min(1)
    for tag in ("default", "chunk7", "chunk64", "chunk1000"):
        idx = np.asarray(student[tag]).astype(np.int64)
        if idx.min() < 0 or idx.max() >= len(codebook):
            return Verdict(False, f"nearest_code ({tag}): indices outside [0, {len(codebook)}): {describe(idx)}")
        chosen = dist[np.arange(len(z)), idx]
        wrong = chosen > best + 1e-9 * (1 + best)
        if wrong.any():
            hint = ""
            if (idx == dist.argmax(1)).mean() > 0.9:
                hint = " They are the FARTHEST codes: use argmin of the distance, not argmax."
            elif (idx == (z @ codebook.T).argmax(1)).mean() > 0.9:
                hint = " They maximise z . e_k: the ||e_k||^2 term of the distance is missing (codes differ in norm)."
            elif (idx == (-2 * z @ codebook.T - (codebook ** 2).sum(1)).argmin(1)).mean() > 0.9:
                hint = " Check the signs: ||z||^2 - 2 z.e_k + ||e_k||^2."
            elif tag != "default":
                hint = f" Only with chunk={tag[5:]}: check the loop over chunks (every row exactly once, in order)."
            return Verdict(False, f"nearest_code ({tag}): {int(wrong.sum())} of {len(z)} rows do not get their nearest "
                                  f"code (squared Euclidean distance, brute force).{hint}")
    return Verdict(True, "nearest_code: the nearest code of every row, with any chunk size")


def probe_nearest_large(ctx):
    torch = _torch()
    z = torch.randn(20000, 4, generator=ctx.generator(3))
    codebook = torch.randn(64, 4, generator=ctx.generator(4))
    idx = ctx.fn("nearest_code")(z, codebook, chunk=512)
    problem = tensor_problem(idx, (20000,), "nearest_code(z (20000, 4), codebook (64, 4), chunk=512)")
    if problem:
        return {"problem": problem}
    return {"z": z, "codebook": codebook, "idx": idx.to(torch.int64)}


def judge_nearest_large(student, reference, ctx):
    z, codebook = np.asarray(student["z"], np.float64), np.asarray(student["codebook"], np.float64)
    idx = np.asarray(student["idx"])
    dist = (z ** 2).sum(1)[:, None] - 2 * z @ codebook.T + (codebook ** 2).sum(1)
    chosen = dist[np.arange(len(z)), np.clip(idx, 0, len(codebook) - 1)]
    wrong = (chosen > dist.min(1) + 1e-4) | (idx < 0) | (idx >= len(codebook))
    if wrong.any():
        return Verdict(False, f"nearest_code on 20000 rows with chunk=512: {int(wrong.sum())} rows get a wrong code "
                              f"(first row {int(np.flatnonzero(wrong)[0])}); the chunks must cover every row once, in order.")
    return Verdict(True, "nearest_code: 20000 rows in chunks of 512 match brute force")


def probe_nearest_reference(ctx):
    torch = _torch()
    z = torch.randn(500, 8, generator=ctx.generator(5))
    codebook = torch.randn(40, 8, generator=ctx.generator(6)) * 0.7
    return {"idx": ctx.fn("nearest_code")(z, codebook, chunk=100)}


def _nearest_device(ctx, torch):
    z = torch.randn(30, 3, dtype=torch.float64, device=ctx.device)
    return ctx.fn("nearest_code")(z, z[:7].clone(), chunk=8), ["torch.int64"]


# ============================================================================ VectorQuantizer
def _vq(ctx, k, c, beta=0.25, offset=0):
    _seed(ctx, offset)
    return ctx.fn("VectorQuantizer")(k, c, beta)


def _vq_outputs(out, shape, label):
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        return None, f"{label} should return (z_q, indices, loss), got {type(out).__name__}"
    torch = _torch()
    z_q, idx, loss = out
    b, c, d, h, w = shape
    for value, want, name in ((z_q, shape, "z_q"), (idx, (b, d, h, w), "indices")):
        problem = tensor_problem(value, want, f"{label}: {name}")
        if problem:
            return None, problem
    if not torch.is_tensor(loss) or loss.numel() != 1:
        return None, f"{label}: loss should be a scalar tensor, got {getattr(loss, 'shape', type(loss).__name__)}"
    return (z_q, idx, loss.reshape(())), None


def probe_vq_values(ctx):
    torch = _torch()
    vq = _vq(ctx, 10, 6, 0.25).eval()
    with torch.no_grad():
        vq.codebook.weight.copy_(_codebook(ctx, 10, 6, 7).float())
    z_e = _randn(ctx, 2, 6, 3, 4, 5, offset=8)
    out, problem = _vq_outputs(vq(z_e), (2, 6, 3, 4, 5), "VectorQuantizer(10, 6)(z_e (2, 6, 3, 4, 5))")
    if problem:
        return {"problem": problem}
    z_q, idx, loss = out
    return {"z_e": z_e, "codebook": vq.codebook.weight.detach(), "z_q": z_q.detach(), "idx": idx.to(torch.int64)}


def judge_vq_values(student, reference, ctx):
    z_e, codebook = np.asarray(student["z_e"], np.float64), np.asarray(student["codebook"], np.float64)
    z_q, idx = np.asarray(student["z_q"], np.float64), np.asarray(student["idx"])
    z = z_e.transpose(0, 2, 3, 4, 1)  # (B, D, H, W, C)
    dist = ((z[..., None, :] - codebook) ** 2).sum(-1)  # (B, D, H, W, K)
    if idx.min() < 0 or idx.max() >= len(codebook):
        return Verdict(False, f"VectorQuantizer: indices outside [0, {len(codebook)}): {describe(idx)}")
    chosen = np.take_along_axis(dist, idx[..., None], -1)[..., 0]
    if (chosen > dist.min(-1) + 1e-5).any():
        hint = (" Did you flatten z_e without moving the channels last (permute(0, 2, 3, 4, 1) before reshape)?"
                if (chosen > dist.min(-1) + 1e-5).mean() > 0.5 else "")
        return Verdict(False, f"VectorQuantizer: indices[b, d, h, w] must be the nearest code of the vector "
                              f"z_e[b, :, d, h, w]; wrong at {int((chosen > dist.min(-1) + 1e-5).sum())} of {idx.size} "
                              f"positions.{hint}")
    want = codebook[idx].transpose(0, 4, 1, 2, 3)  # (B, C, D, H, W)
    if not np.allclose(z_q, want, atol=1e-5):
        return Verdict(False, "VectorQuantizer: z_q[b, :, d, h, w] must equal codebook[indices[b, d, h, w]] (the value of "
                              "the chosen code), back in (B, C, D, H, W) layout.")
    return Verdict(True, "VectorQuantizer: nearest codes, and z_q takes their values in (B, C, D, H, W)")


def probe_vq_straight_through(ctx):
    torch = _torch()
    vq = _vq(ctx, 8, 4).eval()
    z_e = _randn(ctx, 2, 4, 2, 3, 2, offset=9).requires_grad_(True)
    out, problem = _vq_outputs(vq(z_e), (2, 4, 2, 3, 2), "VectorQuantizer(8, 4)")
    if problem:
        return {"problem": problem}
    weights = _randn(ctx, 2, 4, 2, 3, 2, offset=10)
    if not out[0].requires_grad:
        return {"weights": weights, "grad": torch.zeros_like(z_e), "connected": False}
    (grad,) = torch.autograd.grad((out[0] * weights).sum(), z_e, allow_unused=True)
    return {"weights": weights, "grad": torch.zeros_like(z_e) if grad is None else grad, "connected": grad is not None}


def judge_vq_straight_through(student, reference, ctx):
    grad, weights = np.asarray(student["grad"]), np.asarray(student["weights"])
    if not student.get("connected") or not np.abs(grad).max() > 0:
        return Verdict(False, "VectorQuantizer: no gradient flows from z_q back to z_e. argmin has no gradient; pass it "
                              "straight through: z_q = z + (e - z).detach() (value e, gradient identity).")
    if not np.allclose(grad, weights, atol=1e-6):
        return Verdict(False, f"VectorQuantizer: d(sum(w * z_q))/d z_e should equal w (straight-through = identity); "
                              f"max error {np.abs(grad - weights).max():.3g}. Detach (e - z) as a whole, not e alone.")
    return Verdict(True, "VectorQuantizer: the gradient of z_q w.r.t. z_e is the identity (straight-through)")


def probe_vq_loss(ctx):
    torch = _torch()
    beta = 0.37
    vq = _vq(ctx, 6, 3, beta).eval()
    with torch.no_grad():
        vq.codebook.weight.copy_(_codebook(ctx, 6, 3, 11).float())
    z_e = _randn(ctx, 2, 3, 2, 2, 3, offset=12).requires_grad_(True)
    out, problem = _vq_outputs(vq(z_e), (2, 3, 2, 2, 3), f"VectorQuantizer(6, 3, beta={beta})")
    if problem:
        return {"problem": problem}
    _, idx, loss = out
    if not loss.requires_grad:
        return {"problem": "VectorQuantizer: the loss has no gradient (computed under no_grad or from detached tensors?)"}
    grads = torch.autograd.grad(loss, (z_e, vq.codebook.weight), allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, (z_e, vq.codebook.weight))]
    return {"beta": beta, "z_e": z_e.detach(), "codebook": vq.codebook.weight.detach(), "idx": idx.to(torch.int64),
            "loss": loss.detach(), "grad_z": grads[0], "grad_codebook": grads[1]}


def judge_vq_loss(student, reference, ctx):
    beta = float(student["beta"])
    z = np.asarray(student["z_e"], np.float64).transpose(0, 2, 3, 4, 1).reshape(-1, 3)
    codebook = np.asarray(student["codebook"], np.float64)
    idx = np.asarray(student["idx"]).reshape(-1)
    e = codebook[idx]
    numel = z.size
    want_loss = (1 + beta) * ((z - e) ** 2).mean()
    got_loss = float(np.asarray(student["loss"]))
    grad_z = np.asarray(student["grad_z"], np.float64).transpose(0, 2, 3, 4, 1).reshape(-1, 3)
    grad_cb = np.asarray(student["grad_codebook"], np.float64)
    want_gz = beta * 2 * (z - e) / numel
    want_cb = np.zeros_like(codebook)
    np.add.at(want_cb, idx, 2 * (e - z) / numel)
    if not math.isclose(got_loss, want_loss, rel_tol=1e-4, abs_tol=1e-7):
        ratio = got_loss / want_loss
        hint = " (sum instead of mean?)" if ratio > 5 else (" (only one of the two terms?)" if abs(ratio * (1 + beta) - 1) < 1e-3
                                                            or abs(ratio * (1 + beta) - beta) < 1e-3 else "")
        return Verdict(False, f"VectorQuantizer: loss {got_loss:.6g}, expected (1 + beta) * mean((z_e - e)^2) = "
                              f"{want_loss:.6g}{hint}: mse(e, sg[z_e]) + beta * mse(z_e, sg[e]).")
    swapped_z = 2 * (z - e) / numel
    if not np.allclose(grad_z, want_gz, rtol=1e-4, atol=1e-8):
        hint = ""
        if np.allclose(grad_z, swapped_z, rtol=1e-4, atol=1e-8):
            hint = (" Your encoder gradient is the full 2 (z - e) / n: beta sits on the codebook term instead of the "
                    "commitment term (the VQGAN bug).")
        elif np.allclose(grad_z, (1 + beta) * swapped_z, rtol=1e-4, atol=1e-8):
            hint = " The codebook term also pushes the encoder: detach z_e inside the codebook term."
        return Verdict(False, "VectorQuantizer: the loss's gradient w.r.t. z_e must be beta * 2 (z_e - e) / n (only "
                              f"the commitment term reaches the encoder).{hint}")
    if not np.allclose(grad_cb, want_cb, rtol=1e-4, atol=1e-8):
        hint = ""
        if np.allclose(grad_cb, beta * want_cb, rtol=1e-4, atol=1e-8):
            hint = " Your codebook gradient is scaled by beta: beta belongs on the commitment term, not the codebook term."
        elif np.allclose(grad_cb, (1 + beta) * want_cb, rtol=1e-4, atol=1e-8):
            hint = " The commitment term also moves the codes: detach e inside the commitment term."
        elif not np.abs(grad_cb).max() > 0:
            hint = " No gradient reaches the codebook: look the codes up with self.codebook(indices), not detached."
        return Verdict(False, "VectorQuantizer: the loss's gradient w.r.t. each code e_k must be the sum over the vectors "
                              f"assigned to it of 2 (e_k - z_e) / n (the codebook term, weight 1).{hint}")
    return Verdict(True, "VectorQuantizer: loss value and both gradients match mse(e, sg[z_e]) + beta mse(z_e, sg[e])")


def _clusters(ctx, n_per, offset):
    """16 tight clusters on a 4 x 4 grid in the plane, shuffled: (16 n_per, 2)."""
    torch = _torch()
    g = ctx.generator(offset)
    centres = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).reshape(16, 2)
    points = centres.repeat_interleave(n_per, 0) + 0.02 * torch.randn(16 * n_per, 2, generator=g)
    return points[torch.randperm(len(points), generator=g)], centres


def probe_vq_restart(ctx):
    torch = _torch()
    vq = _vq(ctx, 16, 2)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.full((16, 2), 10.0) + 0.01 * torch.randn(16, 2, generator=ctx.generator(13)))
    vq.train()
    _seed(ctx, 14)
    for step in range(100):
        points, _ = _clusters(ctx, 10, 100 + step)  # (160, 2)
        z_e = points.T.reshape(1, 2, 160, 1, 1)
        vq(z_e)
    vq.eval()
    points, centres = _clusters(ctx, 20, 15)
    with torch.no_grad():
        out, problem = _vq_outputs(vq(points.T.reshape(1, 2, 320, 1, 1)), (1, 2, 320, 1, 1), "VectorQuantizer(16, 2)")
    if problem:
        return {"problem": problem}
    return {"idx": out[1].reshape(-1).to(torch.int64), "codebook": vq.codebook.weight.detach()}


def judge_vq_restart(student, reference, ctx):
    from gen3d import metrics

    idx = np.asarray(student["idx"])
    ppl = metrics.codebook_perplexity(idx, 16)
    if ppl < 6.0:
        return Verdict(False, f"VectorQuantizer: a codebook collapsed far from the data (all 16 codes at (10, 10)) must "
                              f"come back to life in training mode, but after 100 training batches from 16 clusters the "
                              f"codes in use have perplexity {ppl:.2f} (expected > 6). Restart dead codes (EMA usage below "
                              "RESTART_THRESHOLD) on random encoder outputs of the batch, in restart_dead_codes, called "
                              "at the end of forward in training mode.")
    return Verdict(True, f"VectorQuantizer: dead-code restarts revive a collapsed codebook (perplexity {ppl:.1f} of 16)")


def probe_vq_eval_frozen(ctx):
    torch = _torch()
    vq = _vq(ctx, 12, 3)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.randn(12, 3, generator=ctx.generator(16)) + 20.0)
    vq.eval()
    before = vq.codebook.weight.detach().clone()
    buffers = {k: v.detach().clone() for k, v in vq.named_buffers()}
    with torch.no_grad():
        for step in range(40):
            vq(_randn(ctx, 2, 3, 4, 4, 4, offset=200 + step))
    changed = [k for k, v in vq.named_buffers() if k in buffers and not torch.equal(v, buffers[k])]
    return {"moved": float((vq.codebook.weight.detach() - before).abs().max()), "changed_buffers": changed,
            "still_eval": not vq.training}


def judge_vq_eval_frozen(student, reference, ctx):
    if student["moved"] > 0:
        return Verdict(False, f"VectorQuantizer: in eval mode the codebook moved (by up to {student['moved']:.3g}): "
                              "restart dead codes only when self.training is True.")
    if student["changed_buffers"]:
        return Verdict(False, f"VectorQuantizer: in eval mode the buffers {student['changed_buffers']} changed: update "
                              "the usage statistics only in training mode.")
    return Verdict(True, "VectorQuantizer: eval mode leaves the codebook and its usage statistics untouched")


def probe_vq_reference(ctx):
    torch = _torch()
    vq = _vq(ctx, 12, 4, 0.3, offset=17).train()
    z_e = _randn(ctx, 3, 4, 3, 3, 3, offset=18).requires_grad_(True)
    _seed(ctx, 19)
    out, problem = _vq_outputs(vq(z_e), (3, 4, 3, 3, 3), "VectorQuantizer(12, 4, 0.3)")
    if problem:
        return {"problem": problem}
    z_q, idx, loss = out
    weights = _randn(ctx, 3, 4, 3, 3, 3, offset=20)
    grads = torch.autograd.grad(loss + (z_q * weights).sum(), (z_e, vq.codebook.weight), allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, (z_e, vq.codebook.weight))]
    return {"z_q": z_q.detach(), "idx": idx.to(torch.int64), "loss": loss.detach().reshape(1), "grad_z": grads[0],
            "grad_codebook": grads[1], "codebook_after": vq.codebook.weight.detach()}


def judge_vq_reference(student, reference, ctx):
    return all_of(_reference_equal("VectorQuantizer", "idx", "indices (training mode)")(student, reference, ctx),
                  expect_close(student, reference, "z_q", "VectorQuantizer: z_q", 1e-4, 1e-5),
                  expect_close(student, reference, "loss", "VectorQuantizer: loss", 1e-4, 1e-6),
                  expect_close(student, reference, "grad_z", "VectorQuantizer: gradient of loss + <w, z_q> w.r.t. z_e",
                               1e-4, 1e-7, "Straight-through for z_q; beta on the commitment term only."),
                  expect_close(student, reference, "grad_codebook", "VectorQuantizer: gradient of the loss w.r.t. the "
                               "codebook", 1e-4, 1e-7, "Weight 1 on the codebook term, e detached in the commitment term."),
                  expect_close(student, reference, "codebook_after", "VectorQuantizer: codebook after one training "
                               "batch (initialisation uniform in [-1/K, 1/K], usage buffer of zeros, restarts with "
                               "torch.randint)", 1e-4, 1e-5))


def _vq_device(ctx, torch):
    vq = _vq(ctx, 5, 3).to(device=ctx.device, dtype=torch.float64).train()
    z_q, idx, loss = vq(torch.randn(2, 3, 2, 2, 2, dtype=torch.float64, device=ctx.device))
    return (z_q, idx, loss), ["torch.float64", "torch.int64", "torch.float64"]


# ============================================================================ codebook_perplexity
PPL_CASES = [  # (indices, K)
    (list(range(8)) * 5, 8),
    ([3] * 17, 8),
    ([0, 0, 1, 1, 1, 1], 4),
    ([2, 7] * 9, 10),
    ([0, 1, 1, 2, 2, 2, 2, 5], 6),
]


def probe_ppl_hand(ctx):
    torch = _torch()
    fn = ctx.fn("codebook_perplexity")
    out = {}
    for i, (indices, k) in enumerate(PPL_CASES):
        value = fn(torch.tensor(indices, dtype=torch.int64).reshape(-1, 1) if i == 4 else torch.tensor(indices), k)
        out[f"case{i}"] = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    return out


def _ppl(indices, k):
    counts = np.bincount(np.asarray(indices).ravel(), minlength=k).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def judge_ppl_hand(student, reference, ctx):
    for i, (indices, k) in enumerate(PPL_CASES):
        got = np.asarray(student[f"case{i}"], np.float64)
        want = _ppl(indices, k)
        if got.size != 1:
            return Verdict(False, f"codebook_perplexity should return a single number, got shape {got.shape}")
        got = float(got[0])
        if not math.isfinite(got):
            return Verdict(False, f"codebook_perplexity({indices[:8]}..., num_codes={k}) is {got}: unused codes give "
                                  "0 * log 0 = NaN; drop them (p > 0) before the sum.")
        if not math.isclose(got, want, rel_tol=1e-5):
            entropy = math.log(want)
            hint = ""
            if math.isclose(got, entropy, rel_tol=1e-4, abs_tol=1e-9):
                hint = " That is the entropy: the perplexity is exp(entropy)."
            elif math.isclose(got, 2 ** entropy, rel_tol=1e-4):
                hint = " exp(H) with H in nats: use the natural log with exp (or log2 with 2**)."
            return Verdict(False, f"codebook_perplexity({indices[:8]}{'...' if len(indices) > 8 else ''}, num_codes={k}) "
                                  f"= {got:.6g}, expected exp(-sum p log p) = {want:.6g}.{hint}")
    return Verdict(True, "codebook_perplexity: K for uniform use, 1 for one code, finite with unused codes")


def probe_ppl_reference(ctx):
    torch = _torch()
    probs = torch.rand(50, generator=ctx.generator(20)) ** 3
    idx = torch.multinomial(probs, 3 * 64, replacement=True, generator=ctx.generator(21)).reshape(3, 4, 4, 4)
    return {"ppl": torch.as_tensor(ctx.fn("codebook_perplexity")(idx, 50), dtype=torch.float64).reshape(-1)}


def _ppl_device(ctx, torch):
    idx = torch.tensor([0, 1, 1, 3], device=ctx.device)
    return ctx.fn("codebook_perplexity")(idx, 5), ["torch.float32"]


# ============================================================================ PatchEncoder / PatchDecoder
def _encoder(ctx, code_dim, hidden, factor, offset=0):
    _seed(ctx, offset)
    return ctx.fn("PatchEncoder")(code_dim, hidden, factor)


def _decoder(ctx, code_dim, hidden, factor, offset=0):
    _seed(ctx, offset)
    return ctx.fn("PatchDecoder")(code_dim, hidden, factor)


def probe_encoder_shape(ctx):
    torch = _torch()
    out = {}
    for factor, r in ((2, 16), (4, 16), (8, 32)):
        with torch.no_grad():
            out[f"f{factor}"] = torch.tensor(_encoder(ctx, 5, 8, factor)(_voxels(ctx, 2, r, factor)).shape)
    return out


def judge_encoder_shape(student, reference, ctx):
    for factor, r in ((2, 16), (4, 16), (8, 32)):
        got = tuple(int(v) for v in np.asarray(student[f"f{factor}"]))
        want = (2, 5, r // factor, r // factor, r // factor)
        if got != want:
            return Verdict(False, f"PatchEncoder(code_dim=5, hidden=8, factor={factor}) on (2, 1, {r}, {r}, {r}): expected "
                                  f"{want}, got {got}: log2(factor) stride-2 convolutions (kernel 4, padding 1) halve the "
                                  "side, then a 3^3 conv and a 1^3 conv to code_dim keep it.")
    return Verdict(True, "PatchEncoder: (B, C, R/f, R/f, R/f) for f in 2, 4, 8")


def probe_encoder_layers(ctx):
    return _layer_shapes(_encoder(ctx, 5, 8, 4), _voxels(ctx, 1, 16), ("Conv3d", "ConvTranspose3d"))


def judge_encoder_layers(student, reference, ctx):
    want = [["Conv3d", 8, 8, 8, 8], ["Conv3d", 8, 4, 4, 4], ["Conv3d", 8, 4, 4, 4], ["Conv3d", 5, 4, 4, 4]]
    got = [list(map(lambda v: v if isinstance(v, str) else int(v), layer)) for layer in student["layers"]]
    if got != want:
        return Verdict(False, f"PatchEncoder(5, hidden=8, factor=4) on a 16^3 grid: the convolutions output "
                              f"{got}, expected {want} (two stride-2 convs to 8^3 and 4^3, a 3^3 conv, a 1^3 conv to "
                              "code_dim), in this order.")
    return Verdict(True, "PatchEncoder: the layers of the docstring, in order")


def probe_encoder_gradients(ctx):
    enc = _encoder(ctx, 4, 6, 4)
    x = _voxels(ctx, 2, 8)
    w = _randn(ctx, 2, 4, 2, 2, 2, offset=3)
    return _gradient_probe(enc, lambda m: (m(x) * w).sum())


def probe_encoder_reference(ctx):
    torch = _torch()
    with torch.no_grad():
        return {"out": _encoder(ctx, 6, 8, 4, offset=21)(_voxels(ctx, 3, 16, 22))}


def _encoder_device(ctx, torch):
    enc = _encoder(ctx, 3, 4, 2).to(device=ctx.device, dtype=torch.float64)
    return enc(_voxels(ctx, 1, 8).to(device=ctx.device, dtype=torch.float64)), ["torch.float64"]


def probe_decoder_shape(ctx):
    torch = _torch()
    out = {}
    for factor, r in ((2, 8), (4, 4), (8, 4)):
        with torch.no_grad():
            out[f"f{factor}"] = torch.tensor(_decoder(ctx, 5, 8, factor)(_randn(ctx, 2, 5, r, r, r, offset=factor)).shape)
    return out


def judge_decoder_shape(student, reference, ctx):
    for factor, r in ((2, 8), (4, 4), (8, 4)):
        got = tuple(int(v) for v in np.asarray(student[f"f{factor}"]))
        want = (2, 1, r * factor, r * factor, r * factor)
        if got != want:
            return Verdict(False, f"PatchDecoder(code_dim=5, hidden=8, factor={factor}) on (2, 5, {r}, {r}, {r}): expected "
                                  f"{want}, got {got}: a 3^3 conv, then log2(factor) transposed convs (kernel 4, stride 2, "
                                  "padding 1) that double the side, the last one to 1 channel.")
    return Verdict(True, "PatchDecoder: (B, 1, r f, r f, r f) for f in 2, 4, 8")


def probe_decoder_layers(ctx):
    torch = _torch()
    dec = _decoder(ctx, 5, 8, 4)
    with torch.no_grad():
        for p in dec.parameters():
            p.mul_(30.0)  # big weights: logits far outside [0, 1] unless something squashes them
    with torch.no_grad():
        y = dec(_randn(ctx, 2, 5, 4, 4, 4, offset=4))
    out = _layer_shapes(dec, _randn(ctx, 2, 5, 4, 4, 4, offset=4), ("Conv3d", "ConvTranspose3d"))
    out.update({"min": float(y.min()), "max": float(y.max())})
    return out


def judge_decoder_layers(student, reference, ctx):
    want = [["Conv3d", 8, 4, 4, 4], ["ConvTranspose3d", 8, 8, 8, 8], ["ConvTranspose3d", 1, 16, 16, 16]]
    got = [list(map(lambda v: v if isinstance(v, str) else int(v), layer)) for layer in student["layers"]]
    if got != want:
        return Verdict(False, f"PatchDecoder(5, hidden=8, factor=4) on (B, 5, 4, 4, 4): the convolutions output {got}, "
                              f"expected {want} (a 3^3 conv, then transposed convs doubling the side), in this order.")
    if student["min"] >= 0 and student["max"] <= 1:
        return Verdict(False, "PatchDecoder must return logits (any real number); with large weights its output stays in "
                              "[0, 1]: remove the final sigmoid (the loss applies it: binary_cross_entropy_with_logits).")
    return Verdict(True, "PatchDecoder: the layers of the docstring, returning logits")


def probe_decoder_gradients(ctx):
    dec = _decoder(ctx, 4, 6, 4)
    z = _randn(ctx, 2, 4, 2, 2, 2, offset=5)
    w = _randn(ctx, 2, 1, 8, 8, 8, offset=6)
    return _gradient_probe(dec, lambda m: (m(z) * w).sum())


def probe_decoder_reference(ctx):
    torch = _torch()
    with torch.no_grad():
        return {"out": _decoder(ctx, 6, 8, 4, offset=23)(_randn(ctx, 3, 6, 4, 4, 4, offset=24))}


def _decoder_device(ctx, torch):
    dec = _decoder(ctx, 3, 4, 2).to(device=ctx.device, dtype=torch.float64)
    return dec(torch.randn(1, 3, 2, 2, 2, dtype=torch.float64, device=ctx.device)), ["torch.float64"]


# ============================================================================ VQVAE
def _vqvae(ctx, k=16, c=4, hidden=16, factor=4, offset=0):
    """A small VQVAE seeded from the run. The codebook starts tiny, so the decoder's first layer sees ~its bias:
    with 6 hidden channels, ~1% of seeds had every ReLU dead (zero gradients, any decode the same)."""
    _seed(ctx, offset)
    return ctx.fn("VQVAE")(k, c, hidden, factor, 0.25)


def probe_vqvae_shapes(ctx):
    model = _vqvae(ctx).eval()
    x = _voxels(ctx, 3, 16, 30)
    out = model(x)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        return {"problem": f"VQVAE.forward should return (logits, indices, vq_loss), got {type(out).__name__}"}
    for value, shape, label in ((out[0], (3, 1, 16, 16, 16), "VQVAE.forward logits"),
                                (out[1], (3, 4, 4, 4), "VQVAE.forward indices"),
                                (model.encode(x), (3, 4, 4, 4), "VQVAE.encode(x)"),
                                (model.decode_indices(out[1]), (3, 1, 16, 16, 16), "VQVAE.decode_indices(indices)")):
        problem = tensor_problem(value, shape, label)
        if problem:
            return {"problem": problem + " (VQVAE(16, 4, 6, factor=4) on (3, 1, 16, 16, 16))"}
    return {"ok": True, "loss_numel": int(out[2].numel())}


def judge_vqvae_shapes(student, reference, ctx):
    if student["loss_numel"] != 1:
        return Verdict(False, "VQVAE.forward: the third output must be the scalar VQ loss")
    return Verdict(True, "VQVAE: forward, encode and decode_indices have the shapes of the docstring")


def probe_vqvae_consistency(ctx):
    torch = _torch()
    model = _vqvae(ctx, offset=1).eval()
    x = _voxels(ctx, 2, 16, 31)
    with torch.no_grad():
        logits, idx, _ = model(x)
        enc = model.encode(x)
        dec = model.decode_indices(enc)
        z_e = model.encoder(x)
        # a random init may send every position to one code, where a reshape mixes nothing up: random indices too
        rand = torch.randint(0, 16, (2, 4, 4, 4), generator=ctx.generator(34))
        dec_rand = model.decode_indices(rand)
        want_rand = model.decoder(model.quantizer.codebook.weight[rand].permute(0, 4, 1, 2, 3))
    return {"logits": logits, "idx": idx.to(torch.int64), "enc": enc.to(torch.int64), "dec": dec, "z_e": z_e,
            "codebook": model.quantizer.codebook.weight.detach(), "dec_rand": dec_rand, "want_rand": want_rand}


def judge_vqvae_consistency(student, reference, ctx):
    idx, enc = np.asarray(student["idx"]), np.asarray(student["enc"])
    z = np.asarray(student["z_e"], np.float64).transpose(0, 2, 3, 4, 1)
    codebook = np.asarray(student["codebook"], np.float64)
    dist = ((z[..., None, :] - codebook) ** 2).sum(-1)
    chosen = np.take_along_axis(dist, np.clip(enc, 0, len(codebook) - 1)[..., None], -1)[..., 0]
    if enc.shape != idx.shape or (chosen > dist.min(-1) + 1e-5).any():
        return Verdict(False, "VQVAE.encode(x) must be the quantizer's nearest-code indices of self.encoder(x).")
    if not np.array_equal(idx, enc):
        return Verdict(False, "VQVAE: forward(x)[1] and encode(x) give different indices in eval mode.")
    if not np.allclose(student["dec"], student["logits"], atol=1e-5):
        hint = ""
        if not np.allclose(student["dec"], student["logits"], atol=1e-2):
            hint = (" Does forward decode the quantized z_q (not z_e)? Does decode_indices move the code channels "
                    "to dim 1 (permute(0, 4, 1, 2, 3), not reshape)?")
        return Verdict(False, "VQVAE: in eval mode decode_indices(encode(x)) must equal forward(x)[0] (both decode the "
                              f"chosen codes); max difference {np.abs(student['dec'] - student['logits']).max():.3g}.{hint}")
    got, want = np.asarray(student["dec_rand"], np.float64), np.asarray(student["want_rand"], np.float64)
    if got.shape != want.shape or not np.allclose(got, want, atol=1e-5):
        return Verdict(False, "VQVAE.decode_indices(indices) on random indices must equal self.decoder applied to "
                              "self.quantizer.codebook(indices) with the code channels moved to dim 1 "
                              "(permute(0, 4, 1, 2, 3), not reshape).")
    return Verdict(True, "VQVAE: encode picks the nearest codes, decode_indices(encode(x)) == forward(x) logits, and "
                         "decode_indices decodes any indices")


def probe_vqvae_gradients(ctx):
    torch = _torch()
    model = _vqvae(ctx, offset=2)
    x = _voxels(ctx, 2, 16, 32)

    def loss(m):
        logits, _, vq_loss = m(x)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, x) + vq_loss
    return _gradient_probe(model, loss)


def probe_vqvae_reference(ctx):
    torch = _torch()
    model = _vqvae(ctx, 20, 5, 8, 4, offset=3).eval()
    with torch.no_grad():
        logits, idx, loss = model(_voxels(ctx, 2, 16, 33))
    return {"logits": logits, "idx": idx.to(torch.int64), "loss": loss.reshape(1)}  # (1,): expect_close needs ndim >= 1


def _vqvae_device(ctx, torch):
    model = _vqvae(ctx).to(device=ctx.device, dtype=torch.float64)
    logits, idx, loss = model(_voxels(ctx, 2, 16).to(device=ctx.device, dtype=torch.float64))
    return (logits, idx, loss), ["torch.float64", "torch.int64", "torch.float64"]


def _grader_vqvae(ctx):
    """Train the notebook's VQVAE on the fixed GRADER budget (the same for student and reference)."""
    torch = _torch()
    from gen3d import hw_vq_prior as hw

    cfg = hw.GRADER
    torch.manual_seed(cfg.seed)
    model = ctx.fn("VQVAE")(cfg.num_codes, cfg.code_dim, cfg.hidden, cfg.factor, cfg.beta).to(ctx.device)
    train = hw.load_shapes(cfg.resolution, "train")
    hw.train_vqvae(model, train.voxels, cfg, device=ctx.device, progress=False)
    return model, train, cfg, hw


def probe_vqvae_quality(ctx):
    torch = _torch()
    import time

    start = time.time()
    model, _, cfg, hw = _grader_vqvae(ctx)
    test = hw.load_shapes(cfg.resolution, "test")
    probs, idx = hw.reconstruct(model, test.voxels[:cfg.n_eval])
    return {"recon": (probs > 0.5).to(torch.uint8), "indices": idx.to(torch.int64), "num_codes": cfg.num_codes,
            "seconds": time.time() - start}


def _held_out(n, resolution=16):
    from gen3d import data

    return data.load_voxels(resolution, "test")["occupancy"][:n].float()


def judge_vqvae_quality(student, reference, ctx):
    import torch

    from gen3d import metrics

    def figures(out):
        recon = torch.as_tensor(np.asarray(out["recon"], np.float32))
        target = _held_out(len(recon))
        if recon.shape != target.shape:
            raise ValueError(f"reconstructions of shape {tuple(recon.shape)}, expected {tuple(target.shape)}")
        indices = np.asarray(out["indices"]).astype(np.int64)
        return float(metrics.voxel_iou(recon, target).mean()), metrics.codebook_perplexity(indices, int(out["num_codes"]))

    try:
        iou, ppl = figures(student)
        ref_iou, ref_ppl = figures(reference)
    except ValueError as err:
        return Verdict(False, f"VQVAE quality run: {err}")
    report = f"held-out IoU {iou:.3f} (reference {ref_iou:.3f}), codebook perplexity {ppl:.1f} (reference {ref_ppl:.1f})"
    problems = []
    if iou < ref_iou - 0.08:
        problems.append("reconstructions are worse")
    if ppl < 0.6 * ref_ppl:
        problems.append("far fewer codes are used (codebook collapse: dead-code restarts, the loss terms)")
    if problems:
        return Verdict(False, f"VQVAE after the same short training as the reference ({hw_budget()}): {report}: "
                              + "; ".join(problems) + ".", fraction=1 - len(problems) / 2)
    return Verdict(True, f"VQVAE quality on a fixed budget: {report}")


def hw_budget():
    from gen3d import hw_vq_prior as hw

    c = hw.GRADER
    return f"{c.vq_steps} steps, batch {c.vq_batch}, {c.num_codes} codes, 16^3 shapes"


# ============================================================================ encode_dataset
FACTOR = 4


def _stand_in(torch, k=65):
    """A stand-in VQ-VAE: tokens are the filled-voxel counts of each 4^3 patch; in training mode every call moves
    its 'codebook' (as dead-code restarts do). It records how it was called."""

    class StandIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.codebook = torch.nn.Parameter(torch.zeros(k, 2))
            self.calls = []

        def encode(self, x):
            self.calls.append([bool(self.training), bool(torch.is_grad_enabled()), int(x.shape[0]), str(x.dtype)])
            if self.training:
                with torch.no_grad():
                    self.codebook.add_(1.0)
            counts = torch.nn.functional.avg_pool3d(x.float(), FACTOR) * FACTOR ** 3  # (b, 1, r, r, r)
            return counts[:, 0].round().long()  # (b, r, r, r)

        def forward(self, x):
            raise RuntimeError("encode_dataset should call vqvae.encode(x), not vqvae(x)")

    return StandIn()


def _asymmetric_voxels(ctx, n, r, offset):
    """Voxels whose patch counts differ along every axis (so a wrong flattening order shows)."""
    torch = _torch()
    fill = torch.rand(n, 1, r // FACTOR, r // FACTOR, r // FACTOR, generator=ctx.generator(offset))
    fill = torch.nn.functional.interpolate(fill, scale_factor=FACTOR, mode="nearest")
    return (torch.rand(n, 1, r, r, r, generator=ctx.generator(offset + 1)) < fill).float()


def probe_encode_frozen(ctx):
    torch = _torch()
    model = _stand_in(torch).train()
    voxels = _asymmetric_voxels(ctx, 10, 16, 40)
    tokens = ctx.fn("encode_dataset")(model, voxels, batch_size=4)
    return {"calls": model.calls, "moved": float(model.codebook.detach().abs().max()), "left_training": model.training,
            "is_tensor": torch.is_tensor(tokens)}


def judge_encode_frozen(student, reference, ctx):
    calls = student["calls"]
    if not calls:
        return Verdict(False, "encode_dataset never called vqvae.encode(x)")
    if any(c[0] for c in calls) or student["moved"] > 0:
        return Verdict(False, "encode_dataset called vqvae.encode in TRAINING mode: the quantizer then restarts dead codes "
                              "and the codebook keeps moving while the prior trains on its tokens. Call vqvae.eval() first.")
    if any(c[1] for c in calls):
        return Verdict(False, "encode_dataset called vqvae.encode with gradients enabled: wrap the loop in torch.no_grad() "
                              "(the tokens are a fixed dataset; no graph should be kept).")
    if student["left_training"]:
        return Verdict(False, "encode_dataset must leave the VQ-VAE in eval mode (frozen).")
    return Verdict(True, "encode_dataset: the VQ-VAE is frozen (eval mode, no_grad) while encoding")


def probe_encode_tokens(ctx):
    torch = _torch()
    model = _stand_in(torch)
    voxels = _asymmetric_voxels(ctx, 70, 16, 41)
    tokens = ctx.fn("encode_dataset")(model, voxels, batch_size=32)
    if not torch.is_tensor(tokens):
        return {"problem": f"encode_dataset should return a tensor, got {type(tokens).__name__}"}
    return {"tokens": tokens, "voxels": voxels.to(torch.uint8), "batches": [c[2] for c in model.calls],
            "dtype": str(tokens.dtype)}


def judge_encode_tokens(student, reference, ctx):
    voxels = np.asarray(student["voxels"], np.int64)
    n, _, r = voxels.shape[:3]
    s = r // FACTOR
    counts = voxels[:, 0].reshape(n, s, FACTOR, s, FACTOR, s, FACTOR).sum(axis=(2, 4, 6))  # (n, s, s, s)
    want = counts.reshape(n, -1)
    got = np.asarray(student["tokens"])
    if got.shape != want.shape:
        hint = " (the last, partial batch is missing?)" if got.shape[0] < n else ""
        return Verdict(False, f"encode_dataset on 70 shapes with 4^3 tokens each, batch_size=32: expected tokens of shape "
                              f"{want.shape}, got {got.shape}{hint}.")
    if student["dtype"] != "torch.int64":
        return Verdict(False, f"encode_dataset should return int64 tokens, got {student['dtype']}")
    if max(student["batches"]) > 32:
        return Verdict(False, f"encode_dataset called encode on batches of {max(student['batches'])} > batch_size = 32")
    if not np.array_equal(got, want):
        for perm in ((0, 3, 2, 1), (0, 2, 1, 3), (0, 1, 3, 2)):
            if np.array_equal(got, counts.transpose(perm).reshape(n, -1)):
                return Verdict(False, "encode_dataset: the tokens are flattened in the wrong order: use raster order, "
                                      "indices.reshape(B, -1) of the (B, r, r, r) grid (the last axis fastest).")
        return Verdict(False, f"encode_dataset: tokens differ from vqvae.encode of each shape (flattened in raster order) in "
                              f"{int((got != want).sum())} of {want.size} entries (shapes out of order?).")
    return Verdict(True, "encode_dataset: (N, T) tokens in raster order, every shape once, in batches")


def probe_encode_reference(ctx):
    torch = _torch()
    model = _vqvae(ctx, offset=4)
    return {"tokens": ctx.fn("encode_dataset")(model, _voxels(ctx, 9, 16, 42), batch_size=4)}


def _encode_device(ctx, torch):
    model = _stand_in(torch).to(ctx.device)
    return ctx.fn("encode_dataset")(model, _voxels(ctx, 3, 8).to(ctx.device), batch_size=2), ["torch.int64"]


# ============================================================================ causal_mask
def probe_mask_hand(ctx):
    fn = ctx.fn("causal_mask")
    out = {}
    for t in (1, 2, 5):
        mask = fn(t)
        problem = tensor_problem(mask, (t, t), f"causal_mask({t})")
        if problem:
            return {"problem": problem}
        out[f"m{t}"] = mask
        out[f"dtype{t}"] = str(mask.dtype)
    return out


def judge_mask_hand(student, reference, ctx):
    for t in (1, 2, 5):
        if student[f"dtype{t}"] != "torch.bool":
            return Verdict(False, f"causal_mask({t}) should be a bool tensor (True = may attend), got {student[f'dtype{t}']}")
        got = np.asarray(student[f"m{t}"]).astype(bool)
        want = np.tril(np.ones((t, t), bool))
        if not np.array_equal(got, want):
            hint = ""
            if np.array_equal(got, np.tril(np.ones((t, t), bool), -1)):
                hint = " Off by one: the diagonal is missing (a position must attend to itself)."
            elif np.array_equal(got, np.tril(np.ones((t, t), bool), 1)):
                hint = " Off by one: position i also sees i + 1 (the next token leaks)."
            elif np.array_equal(got, want.T):
                hint = " Transposed: mask[i, j] (query i, key j) is True for j <= i."
            return Verdict(False, f"causal_mask({t}): expected {want.astype(int).tolist()}, got "
                                  f"{got.astype(int).tolist()}.{hint}")
    return Verdict(True, "causal_mask: lower triangle including the diagonal")


def probe_mask_reference(ctx):
    return {"mask": ctx.fn("causal_mask")(7 + ctx.seed % 5)}


def _mask_device(ctx, torch):
    return ctx.fn("causal_mask")(4, device=ctx.device), ["torch.bool"]


# ============================================================================ CausalSelfAttention
def _attention(ctx, dim=8, heads=2, offset=0):
    _seed(ctx, offset)
    return ctx.fn("CausalSelfAttention")(dim, heads)


def probe_attn_leak(ctx):
    torch = _torch()
    attn = _attention(ctx)
    x = _randn(ctx, 3, 6, 8, offset=50)
    out = {}
    with torch.no_grad():
        y = attn(x)
        problem = tensor_problem(y, (3, 6, 8), "CausalSelfAttention(8, 2)(x (3, 6, 8))")
        if problem:
            return {"problem": problem}
        for t in range(6):
            x2 = x.clone()
            x2[:, t + 1:] = _randn(ctx, 3, 5 - t, 8, offset=60 + t)
            out[f"diff{t}"] = (attn(x2)[:, :t + 1] - y[:, :t + 1]).abs().max() if t < 5 else torch.tensor(0.0)
        x3 = x.clone()
        x3[:, 0] += 3.0
        out["past_effect"] = (attn(x3)[:, 1:] - y[:, 1:]).abs().amax(dim=(0, 2))  # (5,)
    out["y"] = y
    return out


def judge_attn_leak(student, reference, ctx):
    y = np.asarray(student["y"])
    if not np.isfinite(y).all():
        return Verdict(False, "CausalSelfAttention returns NaN: a row of the mask without any allowed position "
                              "(softmax of all -inf)? Each position must at least attend to itself.")
    for t in range(5):
        d = float(np.asarray(student[f"diff{t}"]))
        if d > 1e-5:
            return Verdict(False, f"CausalSelfAttention leaks the future: changing x[:, {t + 1}:] changed the outputs at "
                                  f"positions <= {t} (by {d:.3g}). Mask with causal_mask before the softmax (masked_fill "
                                  "with -inf where the mask is False), softmax over the keys (last dim).")
    effect = np.asarray(student["past_effect"])
    if not (effect > 1e-6).all():
        return Verdict(False, "CausalSelfAttention: changing x[:, 0] does not change the later outputs: positions must "
                              "attend to their past, not only to themselves.")
    return Verdict(True, "CausalSelfAttention: outputs depend on the past and never on the future")


def probe_attn_gradients(ctx):
    attn = _attention(ctx, offset=1)
    x = _randn(ctx, 2, 5, 8, offset=51)
    w = _randn(ctx, 2, 5, 8, offset=52)
    return _gradient_probe(attn, lambda m: (m(x) * w).sum())


def probe_attn_reference(ctx):
    torch = _torch()
    attn = _attention(ctx, 12, 3, offset=2)
    with torch.no_grad():
        return {"y": attn(_randn(ctx, 2, 7, 12, offset=53))}


def _attn_device(ctx, torch):
    attn = _attention(ctx).to(device=ctx.device, dtype=torch.float64)
    return attn(torch.randn(2, 4, 8, dtype=torch.float64, device=ctx.device)), ["torch.float64"]


# ============================================================================ TransformerPrior
def _prior(ctx, v=11, t=9, dim=16, layers=2, heads=2, offset=0):
    _seed(ctx, offset)
    return ctx.fn("TransformerPrior")(v, t, dim, layers, heads)


def _tokens(ctx, b, t, v, offset):
    torch = _torch()
    return torch.randint(0, v, (b, t), generator=ctx.generator(offset))


def probe_prior_shape(ctx):
    torch = _torch()
    prior = _prior(ctx).eval()
    out = {"start_token": int(getattr(prior, "start_token", -1)), "seq_len": int(getattr(prior, "seq_len", -1)),
           "vocab_size": int(getattr(prior, "vocab_size", -1))}
    with torch.no_grad():
        for length in (1, 5, 9):
            logits = prior(_tokens(ctx, 3, length, 11, 70 + length))
            problem = tensor_problem(logits, (3, length, 11),
                                     f"TransformerPrior(vocab_size=11, seq_len=9)(tokens (3, {length}))")
            if problem:
                return {"problem": problem}
    return out


def judge_prior_shape(student, reference, ctx):
    if (student["vocab_size"], student["seq_len"], student["start_token"]) != (11, 9, 11):
        return Verdict(False, f"TransformerPrior(11, 9): expected attributes vocab_size=11, seq_len=9, start_token=11, got "
                              f"{student['vocab_size']}, {student['seq_len']}, {student['start_token']}")
    return Verdict(True, "TransformerPrior: logits (B, L, V) for L in 1, 5, T")


def probe_prior_causal(ctx):
    torch = _torch()
    prior = _prior(ctx, offset=1).eval()
    x = _tokens(ctx, 4, 9, 11, 80)
    out = {}
    with torch.no_grad():
        y = prior(x)
        for t in range(9):
            x2 = x.clone()
            x2[:, t:] = (x[:, t:] + 1 + _tokens(ctx, 4, 9 - t, 10, 81 + t)) % 11  # every token from t on changes
            out[f"future{t}"] = (prior(x2)[:, :t + 1] - y[:, :t + 1]).abs().max()
            if t >= 1:
                x3 = x.clone()
                x3[:, t - 1] = (x[:, t - 1] + 1) % 11
                out[f"prev{t}"] = (prior(x3)[:, t] - y[:, t]).abs().max()
    return out


def judge_prior_causal(student, reference, ctx):
    for t in range(9):
        d = float(np.asarray(student[f"future{t}"]))
        if d > 1e-5:
            hint = (" logits[:, t] sees tokens[:, t] itself: shift the input right (start token first, drop the last token)."
                    if t == 0 or d > 1e-5 else "")
            return Verdict(False, f"TransformerPrior: changing tokens[:, {t}:] changed logits[:, :{t + 1}] (by {d:.3g}); "
                                  f"logits[:, t] may depend on tokens[:, :t] only.{hint}")
    for t in range(1, 9):
        if not float(np.asarray(student[f"prev{t}"])) > 1e-7:
            return Verdict(False, f"TransformerPrior: logits[:, {t}] do not depend on tokens[:, {t - 1}]: the previous "
                                  "token must be the input at position t (start token, then tokens[:, :-1]).")
    return Verdict(True, "TransformerPrior: logits[:, t] depend on tokens[:, :t] and never on tokens[:, t:]")


def probe_prior_start(ctx):
    torch = _torch()
    prior = _prior(ctx, offset=2).eval()
    x = _tokens(ctx, 5, 9, 11, 90)
    with torch.no_grad():
        full = prior(x)
        short = prior(x[:, :4])
    return {"first": full[:, 0], "full": full[:, :4], "short": short}


def judge_prior_start(student, reference, ctx):
    first = np.asarray(student["first"])
    if not np.allclose(first, first[:1], atol=1e-5):
        return Verdict(False, "TransformerPrior: logits[:, 0] (the prediction of the first token) differ between "
                              "sequences: they must come from the start token alone.")
    if not np.allclose(student["full"], student["short"], atol=1e-5):
        return Verdict(False, "TransformerPrior: prior(tokens[:, :4]) differs from prior(tokens)[:, :4]: a prefix must get "
                              "the same logits (position embeddings pos_emb[:, :L], no dependence on L).")
    return Verdict(True, "TransformerPrior: a learned start token predicts x_1; prefixes are consistent")


def probe_prior_gradients(ctx):
    torch = _torch()
    prior = _prior(ctx, offset=3)
    x = _tokens(ctx, 3, 9, 11, 91)

    def loss(m):
        logits = m(x)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 11), x.reshape(-1))
    return _gradient_probe(prior, loss)


def probe_prior_params(ctx):
    prior = _prior(ctx, 50, 64, 32, 3, 4)
    return {"n": int(sum(p.numel() for p in prior.parameters())),
            "names": sorted(name for name, _ in prior.named_parameters())}


def judge_prior_params(student, reference, ctx):
    got, want = int(student["n"]), int(reference["n"])
    if got != want:
        return Verdict(False, f"TransformerPrior(50, 64, dim=32, n_layers=3, n_heads=4) has {got} parameters, the "
                              f"docstring's architecture {want}: token embedding with V + 1 rows, position embedding, "
                              "blocks (2 LayerNorms, qkv + proj, MLP 4x), final LayerNorm, head.")
    return Verdict(True, f"TransformerPrior: {got} parameters, as the reference")


def probe_prior_reference(ctx):
    torch = _torch()
    prior = _prior(ctx, 13, 8, 16, 2, 4, offset=4).eval()
    with torch.no_grad():
        return {"logits": prior(_tokens(ctx, 3, 8, 13, 92))}


def _prior_device(ctx, torch):
    prior = _prior(ctx).to(device=ctx.device, dtype=torch.float64)
    return prior(_tokens(ctx, 2, 9, 11, 93).to(ctx.device)), ["torch.float64"]


def probe_prior_quality(ctx):
    torch = _torch()
    import time

    start = time.time()
    vqvae, train, cfg, hw = _grader_vqvae(ctx)
    tokens = ctx.fn("encode_dataset")(vqvae, train.voxels)
    torch.manual_seed(cfg.seed)
    prior = ctx.fn("TransformerPrior")(cfg.num_codes, tokens.shape[1], cfg.prior_dim, cfg.prior_layers,
                                       cfg.prior_heads).to(ctx.device)
    hw.train_prior(prior, tokens, cfg, device=ctx.device, progress=False)
    g = torch.Generator(device=ctx.device).manual_seed(cfg.seed)
    sampled = ctx.fn("sample_tokens")(prior, cfg.n_samples, temperature=1.0, generator=g)
    samples = hw.decode_tokens(vqvae, sampled)
    return {"samples": (samples > 0.5).to(torch.uint8), "seconds": time.time() - start}


QUALITY_MARGINS = {"one_nna": 0.10, "coverage": 0.12}


def judge_prior_quality(student, reference, ctx):
    import torch

    from gen3d import metrics

    def figures(out):
        samples = torch.as_tensor(np.asarray(out["samples"], np.float32))
        if samples.dim() != 5 or samples.shape[1:] != (1, 16, 16, 16):
            raise ValueError(f"samples of shape {tuple(samples.shape)}, expected (N, 1, 16, 16, 16)")
        ref = _held_out(64)
        dist_gr = metrics.pairwise_distances(samples, ref)
        return {"coverage": metrics.coverage(dist_gr),
                "one_nna": metrics.one_nna(metrics.pairwise_distances(samples, samples),
                                           metrics.pairwise_distances(ref, ref), dist_gr)}

    try:
        got, want = figures(student), figures(reference)
    except ValueError as err:
        return Verdict(False, f"TransformerPrior quality run: {err}")
    report = ", ".join(f"{k} {got[k]:.3f} (reference {want[k]:.3f})" for k in QUALITY_MARGINS)
    problems = []
    if got["one_nna"] > want["one_nna"] + QUALITY_MARGINS["one_nna"]:
        problems.append("1-NNA is higher (samples easier to tell from real shapes)")
    if got["coverage"] < want["coverage"] - QUALITY_MARGINS["coverage"]:
        problems.append("coverage is lower (fewer held-out shapes matched)")
    if problems:
        return Verdict(False, f"samples of VQ-VAE + prior after the reference's training budget: {report}. "
                              + "; ".join(problems) + ". Check the shift/start token of the prior, the mask, and "
                              "sample_tokens.", fraction=1 - len(problems) / len(QUALITY_MARGINS))
    return Verdict(True, f"VQ-VAE + prior samples on a fixed budget: {report}")


# ============================================================================ sample_tokens
def _judge_distribution(label, temperature=1.0, top_k=None):
    def judge(student, reference, ctx):
        counts = _counts(student["samples"], TABLE_V, TABLE_T)
        if counts is None:
            return Verdict(False, f"{label}: tokens outside [0, {TABLE_V})")
        probs = _joint_probs(student["table"], temperature, top_k)
        verdict = _chi2(counts, probs, label)
        if not verdict.passed:
            hints = []
            for tau in (1.0, 1 / temperature if temperature != 1 else None):
                if tau and tau != temperature and _chi2(counts, _joint_probs(student["table"], tau, top_k), "").passed:
                    hints.append("the samples follow temperature "
                                 f"{tau:g} instead of {temperature:g}: divide the logits by the temperature")
            if top_k is not None and _chi2(counts, _joint_probs(student["table"], temperature, None), "").passed:
                hints.append("top_k is ignored")
            verdict = Verdict(False, verdict.message + (". Likely: " + "; ".join(hints) if hints else
                                                        ". Sample from softmax(logits[:, t] / temperature) at step t, "
                                                        "feeding the tokens drawn so far."))
        return verdict
    return judge


def probe_sample_generator(ctx):
    torch = _torch()
    prior = _table_prior(_table(ctx, 5))
    fn = ctx.fn("sample_tokens")
    a = fn(prior, 200, generator=torch.Generator().manual_seed(ctx.seed))
    b = fn(prior, 200, generator=torch.Generator().manual_seed(ctx.seed))
    c = fn(prior, 200, generator=torch.Generator().manual_seed(ctx.seed + 1))
    return {"a": a, "b": b, "c": c, "dtype": str(a.dtype)}


def judge_sample_generator(student, reference, ctx):
    if student["dtype"] != "torch.int64":
        return Verdict(False, f"sample_tokens should return int64 tokens, got {student['dtype']}")
    if not np.array_equal(student["a"], student["b"]):
        return Verdict(False, "sample_tokens: two calls with generators of the same seed gave different samples: draw "
                              "with torch.multinomial(..., generator=generator), nothing from the global RNG.")
    if np.array_equal(student["a"], student["c"]):
        return Verdict(False, "sample_tokens: different generator seeds gave identical samples (greedy argmax?).")
    return Verdict(True, "sample_tokens: reproducible from the generator")


def probe_sample_reference(ctx):
    torch = _torch()
    prior = _table_prior(_table(ctx, 6, scale=2.0))
    return {"tokens": ctx.fn("sample_tokens")(prior, 500, temperature=0.8, top_k=3,
                                              generator=torch.Generator().manual_seed(ctx.seed + 5))}


def _sample_device(ctx, torch):
    prior = _table_prior(_table(ctx, 7), ctx.device)
    g = torch.Generator(device=ctx.device).manual_seed(0)
    return ctx.fn("sample_tokens")(prior, 10, top_k=2, generator=g), ["torch.int64"]


# ============================================================================ complete_tokens
def probe_complete_known(ctx):
    torch = _torch()
    prior = _table_prior(_table(ctx, 8))
    tokens = torch.randint(0, TABLE_V, (300, TABLE_T), generator=ctx.generator(100))
    known = torch.rand(300, TABLE_T, generator=ctx.generator(101)) < 0.5
    out = ctx.fn("complete_tokens")(prior, tokens, known, generator=torch.Generator().manual_seed(ctx.seed))
    problem = tensor_problem(out, (300, TABLE_T), "complete_tokens(prior, tokens (300, 3), known (300, 3))")
    if problem:
        return {"problem": problem}
    known_1d = torch.tensor([False, True, False])
    out_1d = ctx.fn("complete_tokens")(prior, tokens[:50], known_1d, generator=torch.Generator().manual_seed(1))
    return {"tokens": tokens, "known": known, "out": out, "out_1d": out_1d, "tokens_1d": tokens[:50]}


def judge_complete_known(student, reference, ctx):
    tokens, known, out = (np.asarray(student[k]) for k in ("tokens", "known", "out"))
    known = known.astype(bool)
    if (out[known] != tokens[known]).any():
        return Verdict(False, f"complete_tokens overwrote {int((out[known] != tokens[known]).sum())} of {int(known.sum())} "
                              "known tokens: keep tokens[known] and sample only the unknown positions "
                              "(torch.where(known[:, t], out[:, t], drawn)).")
    if out.min() < 0 or out.max() >= TABLE_V:
        return Verdict(False, f"complete_tokens: tokens outside [0, {TABLE_V})")
    out_1d, tok_1d = np.asarray(student["out_1d"]), np.asarray(student["tokens_1d"])
    if out_1d.shape != tok_1d.shape or (out_1d[:, 1] != tok_1d[:, 1]).any():
        return Verdict(False, "complete_tokens with a (T,) known mask must keep that column of every sequence "
                              "(broadcast the mask to (n, T)).")
    return Verdict(True, "complete_tokens keeps every known token, with (n, T) or (T,) masks")


def probe_complete_prefix(ctx):
    torch = _torch()
    table = _table(ctx, 9, scale=1.5)
    prior = _table_prior(table)
    first = torch.arange(N_DRAWS) % TABLE_V
    tokens = torch.stack([first, torch.zeros_like(first), torch.zeros_like(first)], 1)
    known = torch.tensor([True, False, False])
    out = ctx.fn("complete_tokens")(prior, tokens, known, temperature=0.7,
                                    generator=torch.Generator().manual_seed(ctx.seed + 2))
    problem = tensor_problem(out, (N_DRAWS, TABLE_T), "complete_tokens")
    if problem:
        return {"problem": problem}
    return {"table": table, "out": out}


def judge_complete_prefix(student, reference, ctx):
    table, out = np.asarray(student["table"]), np.asarray(student["out"])
    if out.min() < 0 or out.max() >= TABLE_V:
        return Verdict(False, f"complete_tokens: tokens outside [0, {TABLE_V})")
    for a in range(TABLE_V):
        rows = out[out[:, 0] == a]
        if len(rows) != N_DRAWS // TABLE_V:
            return Verdict(False, "complete_tokens changed the known first token")
        counts = np.bincount(rows[:, 1] * TABLE_V + rows[:, 2], minlength=TABLE_V ** 2)
        p1 = _step_probs(table, 1, a, 0.7)
        probs = np.array([p1[x1] * _step_probs(table, 2, x1, 0.7)[x2] for x1 in range(TABLE_V) for x2 in range(TABLE_V)])
        verdict = _chi2(counts, probs, f"complete_tokens given x_1 = {a} (temperature 0.7)")
        if not verdict.passed:
            return Verdict(False, verdict.message + ". The unknown tokens must be drawn in order from "
                                                    "softmax(logits[:, t] / temperature), conditioned on the known prefix.")
    return Verdict(True, "complete_tokens: completions of a known prefix follow the prior's conditional distribution")


def probe_complete_middle(ctx):
    torch = _torch()
    table = _table(ctx, 10, scale=1.5)
    prior = _table_prior(table)
    middle = torch.arange(N_DRAWS) % TABLE_V
    tokens = torch.stack([torch.zeros_like(middle), middle, torch.zeros_like(middle)], 1)
    known = torch.zeros(N_DRAWS + 1, TABLE_T, dtype=torch.bool)
    known[:N_DRAWS, 1] = True  # the middle token is known in every row but one extra, fully unknown row
    tokens = torch.cat([tokens, torch.zeros(1, TABLE_T, dtype=tokens.dtype)])
    out = ctx.fn("complete_tokens")(prior, tokens, known, generator=torch.Generator().manual_seed(ctx.seed + 3))
    problem = tensor_problem(out, (N_DRAWS + 1, TABLE_T), "complete_tokens")
    if problem:
        return {"problem": problem}
    return {"table": table, "out": out[:N_DRAWS]}


def judge_complete_middle(student, reference, ctx):
    table, out = np.asarray(student["table"]), np.asarray(student["out"])
    if out.min() < 0 or out.max() >= TABLE_V:
        return Verdict(False, f"complete_tokens: tokens outside [0, {TABLE_V})")
    if (out[:, 1] != np.arange(N_DRAWS) % TABLE_V).any():
        return Verdict(False, "complete_tokens changed the known middle token")
    counts = np.bincount(out[:, 0], minlength=TABLE_V)
    verdict = _chi2(counts, _step_probs(table, 0, TABLE_V), "complete_tokens: the unknown first token")
    if not verdict.passed:
        return verdict
    for b in range(TABLE_V):
        rows = out[out[:, 1] == b]
        verdict = _chi2(np.bincount(rows[:, 2], minlength=TABLE_V), _step_probs(table, 2, b),
                        f"complete_tokens: x_3 after a known x_2 = {b}")
        if not verdict.passed:
            return Verdict(False, verdict.message + ". A token sampled after a known one must be conditioned on the known "
                                                    "value: write known tokens into the sequence before sampling later "
                                                    "positions (not only at the end).")
    return Verdict(True, "complete_tokens: tokens after a known middle token are conditioned on it")


def probe_complete_reference(ctx):
    torch = _torch()
    prior = _table_prior(_table(ctx, 11, scale=2.0))
    tokens = torch.randint(0, TABLE_V, (400, TABLE_T), generator=ctx.generator(102))
    known = torch.rand(400, TABLE_T, generator=ctx.generator(103)) < 0.4
    return {"out": ctx.fn("complete_tokens")(prior, tokens, known, temperature=1.3,
                                             generator=torch.Generator().manual_seed(ctx.seed + 4))}


def _complete_device(ctx, torch):
    prior = _table_prior(_table(ctx, 12), ctx.device)
    tokens = torch.zeros(4, TABLE_T, dtype=torch.long, device=ctx.device)
    known = torch.tensor([True, False, False], device=ctx.device)
    g = torch.Generator(device=ctx.device).manual_seed(0)
    return ctx.fn("complete_tokens")(prior, tokens, known, generator=g), ["torch.int64"]


# ============================================================================ the topic
CHECKS = [
    make_check("nearest_code.brute_force", "value", probe_nearest_brute, judge_nearest_brute, True, points=2),
    make_check("nearest_code.chunked", "value", probe_nearest_large, judge_nearest_large, True),
    make_check("nearest_code.reference", "value", probe_nearest_reference,
           _reference_equal("nearest_code", "idx", "indices"), False),
    make_check("nearest_code.device", "device", _device_probe(_nearest_device), _judge_device("nearest_code"), True),

    make_check("VectorQuantizer.values", "value", probe_vq_values, judge_vq_values, True),
    make_check("VectorQuantizer.straight_through", "gradient", probe_vq_straight_through, judge_vq_straight_through, True,
           points=2),
    make_check("VectorQuantizer.loss_gradients", "gradient", probe_vq_loss, judge_vq_loss, True, points=2),
    make_check("VectorQuantizer.dead_code_restart", "value", probe_vq_restart, judge_vq_restart, True, points=2),
    make_check("VectorQuantizer.eval_frozen", "value", probe_vq_eval_frozen, judge_vq_eval_frozen, True),
    make_check("VectorQuantizer.reference", "value", probe_vq_reference, judge_vq_reference, False),
    make_check("VectorQuantizer.device", "device", _device_probe(_vq_device), _judge_device("VectorQuantizer"), True),

    make_check("codebook_perplexity.hand_cases", "value", probe_ppl_hand, judge_ppl_hand, True),
    make_check("codebook_perplexity.reference", "value", probe_ppl_reference,
           _reference_close("codebook_perplexity", "ppl", "perplexity of skewed random codes", 1e-5, 1e-6), False),
    make_check("codebook_perplexity.device", "device", _device_probe(_ppl_device), _judge_device("codebook_perplexity"),
           True),

    make_check("PatchEncoder.shape", "shape", probe_encoder_shape, judge_encoder_shape, True),
    make_check("PatchEncoder.layers", "shape", probe_encoder_layers, judge_encoder_layers, True),
    make_check("PatchEncoder.gradients", "gradient", probe_encoder_gradients, _judge_gradients("PatchEncoder"), True),
    make_check("PatchEncoder.reference", "value", probe_encoder_reference,
           _reference_close("PatchEncoder", "out", "output of a seeded encoder", 1e-4, 1e-5,
                            "Same layers in the same order (seeded initialisation), and the input rescaled to 2 x - 1."),
           False),
    make_check("PatchEncoder.device", "device", _device_probe(_encoder_device), _judge_device("PatchEncoder"), True),

    make_check("PatchDecoder.shape", "shape", probe_decoder_shape, judge_decoder_shape, True),
    make_check("PatchDecoder.layers_logits", "shape", probe_decoder_layers, judge_decoder_layers, True),
    make_check("PatchDecoder.gradients", "gradient", probe_decoder_gradients, _judge_gradients("PatchDecoder"), True),
    make_check("PatchDecoder.reference", "value", probe_decoder_reference,
           _reference_close("PatchDecoder", "out", "output of a seeded decoder", 1e-4, 1e-5), False),
    make_check("PatchDecoder.device", "device", _device_probe(_decoder_device), _judge_device("PatchDecoder"), True),

    make_check("VQVAE.shapes", "shape", probe_vqvae_shapes, judge_vqvae_shapes, True),
    make_check("VQVAE.consistency", "value", probe_vqvae_consistency, judge_vqvae_consistency, True, points=2),
    make_check("VQVAE.gradients", "gradient", probe_vqvae_gradients, _judge_gradients("VQVAE"), True),
    make_check("VQVAE.reference", "value", probe_vqvae_reference,
           lambda s, r, c: all_of(_reference_equal("VQVAE", "idx", "indices")(s, r, c),
                                  expect_close(s, r, "logits", "VQVAE: logits", 1e-4, 1e-5,
                                               "Build encoder, quantizer, decoder in this order."),
                                  expect_close(s, r, "loss", "VQVAE: vq loss", 1e-4, 1e-6)), False),
    make_check("VQVAE.device", "device", _device_probe(_vqvae_device), _judge_device("VQVAE"), True),
    make_check("VQVAE.quality", "quality", probe_vqvae_quality, judge_vqvae_quality, False, points=3, timeout=180.0,
           fixed_seed=QUALITY_SEED),

    make_check("encode_dataset.frozen", "value", probe_encode_frozen, judge_encode_frozen, True, points=2),
    make_check("encode_dataset.tokens", "value", probe_encode_tokens, judge_encode_tokens, True),
    make_check("encode_dataset.reference", "value", probe_encode_reference,
           _reference_equal("encode_dataset", "tokens", "tokens of a seeded VQVAE"), False),
    make_check("encode_dataset.device", "device", _device_probe(_encode_device), _judge_device("encode_dataset"), True),

    make_check("causal_mask.hand_cases", "value", probe_mask_hand, judge_mask_hand, True, points=2),
    make_check("causal_mask.reference", "value", probe_mask_reference,
           _reference_equal("causal_mask", "mask", "mask"), False),
    make_check("causal_mask.device", "device", _device_probe(_mask_device), _judge_device("causal_mask"), True),

    make_check("CausalSelfAttention.no_leak", "value", probe_attn_leak, judge_attn_leak, True, points=2),
    make_check("CausalSelfAttention.gradients", "gradient", probe_attn_gradients, _judge_gradients("CausalSelfAttention"),
           True),
    make_check("CausalSelfAttention.reference", "value", probe_attn_reference,
           _reference_close("CausalSelfAttention", "y", "output of a seeded module", 1e-4, 1e-5,
                            "Scale the scores by 1 / sqrt(head_dim), softmax over the keys, heads split as "
                            "(B, T, nh, d) -> (B, nh, T, d)."), False),
    make_check("CausalSelfAttention.device", "device", _device_probe(_attn_device), _judge_device("CausalSelfAttention"),
           True),

    make_check("TransformerPrior.shape", "shape", probe_prior_shape, judge_prior_shape, True),
    make_check("TransformerPrior.causal", "value", probe_prior_causal, judge_prior_causal, True, points=2),
    make_check("TransformerPrior.start_token", "value", probe_prior_start, judge_prior_start, True),
    make_check("TransformerPrior.gradients", "gradient", probe_prior_gradients, _judge_gradients("TransformerPrior"), True),
    make_check("TransformerPrior.parameter_count", "shape", probe_prior_params, judge_prior_params, False),
    make_check("TransformerPrior.reference", "value", probe_prior_reference,
           _reference_close("TransformerPrior", "logits", "logits of a seeded prior", 1e-4, 1e-5,
                            "Same modules in the docstring's order; pre-norm residual blocks; final LayerNorm."), False),
    make_check("TransformerPrior.device", "device", _device_probe(_prior_device), _judge_device("TransformerPrior"), True),
    make_check("TransformerPrior.quality", "quality", probe_prior_quality, judge_prior_quality, False, points=3,
           timeout=240.0, fixed_seed=QUALITY_SEED),

    make_check("sample_tokens.distribution", "value", lambda ctx: _sample(ctx, offset=1),
           _judge_distribution("sample_tokens (temperature 1)"), True, points=2),
    make_check("sample_tokens.temperature", "value", lambda ctx: _sample(ctx, temperature=0.5, offset=2),
           _judge_distribution("sample_tokens (temperature 0.5)", 0.5), True),
    make_check("sample_tokens.top_k", "value", lambda ctx: _sample(ctx, top_k=2, offset=3, scale=2.0),
           _judge_distribution("sample_tokens (top_k = 2)", 1.0, 2), True),
    make_check("sample_tokens.generator", "value", probe_sample_generator, judge_sample_generator, True),
    make_check("sample_tokens.reference", "value", probe_sample_reference,
           _reference_equal("sample_tokens", "tokens", "samples with the same generator seed",
                            "Draw one torch.multinomial(probs, 1, generator=generator) per position, in order."), False),
    make_check("sample_tokens.device", "device", _device_probe(_sample_device), _judge_device("sample_tokens"), True),

    make_check("complete_tokens.keeps_known", "value", probe_complete_known, judge_complete_known, True, points=2),
    make_check("complete_tokens.prefix_distribution", "value", probe_complete_prefix, judge_complete_prefix, True),
    make_check("complete_tokens.middle_known", "value", probe_complete_middle, judge_complete_middle, True),
    make_check("complete_tokens.reference", "value", probe_complete_reference,
           _reference_equal("complete_tokens", "out", "completions with the same generator seed",
                            "One torch.multinomial draw per position that is not known everywhere, in raster order."),
           False),
    make_check("complete_tokens.device", "device", _device_probe(_complete_device), _judge_device("complete_tokens"), True),
]

# the kit's metric does what codebook_perplexity asks for (the grader's judges use it, student code may not)
TOPIC = Topic(name="03_vq_prior", notebook="solutions/03_vq_prior/vq_prior.ipynb", functions=FUNCTIONS, checks=CHECKS,
              forbidden=("gen3d.metrics.codebook_perplexity",))
