"""Topic 04_diffusion: DDPM schedules, q_sample, the conditioned U-Net, the loss, DDPM/DDIM sampling, CFG.

Oracles: diffusers' ``DDPMScheduler`` / ``DDIMScheduler`` / ``get_timestep_embedding`` (imported in the
judges only, in the parent), and closed forms computed here in numpy. Probes build every schedule from
random betas with :func:`_schedule` so that a bug in ``schedule_from_betas`` is charged there only.
Quality: a short fixed-seed training of the student's whole pipeline (16x16 renders, 400 steps, ~20 s on a
CPU core); the probe returns only raw outputs (DDIM samples and the network's noise predictions on held-out
renders) and the judge computes the denoising error, the feature Frechet distance and the category accuracy
with ``gen3d.features`` in the parent, against the reference's figures on the same budget (cached).

Layout (one section per graded function, in notebook order; each section holds its probes and judges, the
check list at the end wires them together):
    shared helpers                 trusted schedule tables (_tables/_schedule), the device-check factory
    normalize_images               uint8 -> [-1, 1]
    make_beta_schedule             diffusers' betas, Nichol & Dhariwal's closed form
    schedule_from_betas            diffusers' DDPMScheduler tables, Ho et al. eqs. 4-7
    q_sample / predict_x0          diffusers' add_noise, moments of q(x_t | x_0), inversion, finite differences
    timestep_embedding             diffusers' get_timestep_embedding
    network pieces                 ResBlock and AttentionBlock: shapes, dependence, gradients, reference
    UNet                           shapes at 8/16/32 px, conditioning (t, label, null token, view)
    diffusion_loss                 a perfect/zero model, the draws of t and of the label dropout
    p_sample_step                  diffusers' DDPMScheduler.step, the noise-free last step
    ddim_step / ddim_timesteps     diffusers' DDIMScheduler.step, determinism + inversion, eta = 1 is DDPM, grids
    guidance                       classifier_free_guidance and predict_eps at scales 0, 1, s
    sample                         the exact denoiser of a one-image dataset, determinism, reference runs
    quality                        the short training run (probe: raw outputs; judge: every figure)
    the topic                      CHECKS and TOPIC

The issue's planted bugs and the checks that catch them (mutants in autograder/mutants/m04_diffusion.py):
alphas instead of alphas_cumprod (schedule_from_betas.oracle, q_sample.oracle), t off by one
(q_sample.oracle, p_sample_step.oracle, sample.exact_denoiser), sqrt missing (q_sample.statistics,
predict_x0.inverts_q_sample, schedule_from_betas.oracle), wrong posterior variance (schedule_from_betas.oracle),
noise added at the last step (p_sample_step.last_step), guidance the wrong way round
(classifier_free_guidance.values), time embedding ignored (ResBlock.depends_on_emb, UNet.conditioning), data
not scaled to [-1, 1] (normalize_images.values), a DDIM grid that never visits the last timestep
(ddim_timesteps.grid).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from autograder.spec import Check, Topic, Verdict, all_of, as_array, expect_close, expect_shape, scalar

FUNCTIONS = ["normalize_images", "make_beta_schedule", "schedule_from_betas", "q_sample", "timestep_embedding",
             "ResBlock", "AttentionBlock", "UNet", "diffusion_loss", "predict_x0", "p_sample_step", "ddim_step",
             "ddim_timesteps", "classifier_free_guidance", "predict_eps", "sample"]
QUALITY_SEED = 4
NULL = -1  # gen3d.hw_diffusion.NULL_LABEL


# ----------------------------------------------------------------------------- shared helpers
def _hw():
    from gen3d import hw_diffusion

    return hw_diffusion


def _random_betas(g: torch.Generator, T: int) -> torch.Tensor:
    """(T,) float64 increasing betas in [1e-4, 0.06]: a schedule no student can special-case."""
    return torch.sort(torch.rand(T, generator=g, dtype=torch.float64) * 0.06 + 1e-4).values


def _tables(betas) -> dict:
    """The schedule's tables in numpy float64 (Ho et al. eqs. 4, 6, 7): the judges' closed forms."""
    b = np.asarray(betas, dtype=np.float64)
    a = 1 - b
    ab = np.cumprod(a)
    abp = np.concatenate([[1.0], ab[:-1]])
    var = b * (1 - abp) / (1 - ab)
    return {"betas": b, "alphas": a, "alphas_cumprod": ab, "alphas_cumprod_prev": abp, "posterior_variance": var,
            "posterior_log_variance_clipped": np.log(np.concatenate([var[1:2], var[1:]])),
            "posterior_mean_coef1": b * np.sqrt(abp) / (1 - ab),
            "posterior_mean_coef2": (1 - abp) * np.sqrt(a) / (1 - ab)}


def _schedule(betas, device="cpu"):
    """A trusted DiffusionSchedule (float64) for the probes of the functions that consume one."""
    return _hw().DiffusionSchedule(**{k: torch.tensor(v, device=device) for k, v in _tables(betas).items()})


def _t(x) -> torch.Tensor:
    return torch.as_tensor(x)


def _check_seed_noise(seed: int, shape) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed))


def _fails(label: str, message: str) -> Verdict:
    return Verdict(False, f"{label}: {message}")


def _ref_check(name, function, probe, keys, hint, rtol=1e-4, atol=1e-5, points=1.0, timeout=60.0):
    """A hidden value check comparing every key of ``keys`` with the reference's."""
    def judge(student, reference, ctx):
        return all_of(*[expect_close(student, reference, k, f"{function}: {k}", rtol=rtol, atol=atol, hint=hint)
                        for k in keys])
    return Check(name, function, "value", probe, judge, points=points, timeout=timeout)


def _device_check(function, run, hint=""):
    """Runs ``run(device, dtype) -> tensor`` on ctx.device in float64 and on the CPU; the output must stay on
    the input's device and dtype and agree with the CPU result."""
    def probe(ctx):
        out = run(ctx.device, torch.float64)
        cpu = run(torch.device("cpu"), torch.float64)
        return {"device": str(out.device), "dtype": str(out.dtype), "out": out.detach().cpu(), "cpu": cpu.detach()}

    def judge(student, reference, ctx):
        label = f"{function} on {ctx.device}"
        if student.get("device", "").split(":")[0] != ctx.device.split(":")[0]:
            return _fails(label, f"the output is on {student.get('device')}, the input was on {ctx.device}. "
                                 "Create new tensors with device=x.device (or *_like) and never call .cpu()/.cuda(). "
                                 + hint)
        if student.get("dtype") != "torch.float64":
            return _fails(label, f"float64 inputs gave a {student.get('dtype')} output: keep the input's dtype "
                                 "(no hard-coded float32 / .float()). " + hint)
        return expect_close(student, {"out": student.get("cpu")}, "out", f"{label} vs on cpu", rtol=1e-6, atol=1e-8)
    return Check(f"{function}.device", function, "device", probe, judge, needs_reference=False)


# ----------------------------------------------------------------------------- normalize_images
def _probe_normalize(ctx):
    g = ctx.generator()
    images = torch.randint(0, 256, (2, 3, 3, 5, 5), generator=g, dtype=torch.uint8)
    images[0, 0, 0, 0, :3] = torch.tensor([0, 255, 128], dtype=torch.uint8)
    out = ctx.fn("normalize_images")(images.clone())
    return {"images": images, "out": out, "dtype": str(getattr(out, "dtype", type(out).__name__))}


def _judge_normalize(student, reference, ctx):
    images = as_array(student.get("images"), "input").astype(np.float64)
    want = {"out": images / 127.5 - 1}
    if student.get("dtype") != "torch.float32":
        return _fails("normalize_images", f"expected a float32 tensor, got {student.get('dtype')}")
    got = as_array(student.get("out"), "normalize_images output")
    if got.shape == want["out"].shape and abs(got.min() - 0) < 1e-6 and got.max() <= 1.0 + 1e-6:
        return _fails("normalize_images", f"the output lies in [{got.min():.3g}, {got.max():.3g}], but the model (and "
                                          "the noise it is mixed with) needs [-1, 1]: x / 127.5 - 1")
    return expect_close(student, want, "out", "normalize_images: 0 -> -1, 255 -> 1, affine in between", atol=1e-6,
                        hint="Map uint8 v to v / 127.5 - 1.")


def _probe_normalize_device(ctx):
    images = torch.randint(0, 256, (2, 3, 4, 4), generator=ctx.generator(), dtype=torch.uint8)
    out = ctx.fn("normalize_images")(images.to(ctx.device))
    return {"device": str(out.device), "out": out.cpu(), "want": images.double() / 127.5 - 1}


def _judge_normalize_device(student, reference, ctx):
    if student.get("device", "").split(":")[0] != ctx.device.split(":")[0]:
        return _fails("normalize_images", f"the output is on {student.get('device')}, the input on {ctx.device}")
    return expect_close(student, {"out": student.get("want")}, "out", f"normalize_images on {ctx.device}", atol=1e-6)


# ----------------------------------------------------------------------------- make_beta_schedule
def _probe_betas_oracle(ctx):
    fn = ctx.fn("make_beta_schedule")
    T = int(torch.randint(20, 200, (1,), generator=ctx.generator()))
    return {"T": T, "linear": fn("linear", T), "cosine": fn("cosine", T),
            "linear_1000": fn("linear", 1000), "cosine_1000": fn("cosine", 1000)}


def _diffusers_betas(kind: str, T: int) -> np.ndarray:
    from diffusers import DDPMScheduler

    name = {"linear": "linear", "cosine": "squaredcos_cap_v2"}[kind]
    scheduler = DDPMScheduler(num_train_timesteps=T, beta_schedule=name, beta_start=1e-4, beta_end=0.02)
    return scheduler.betas.double().numpy()


def _judge_betas_oracle(student, reference, ctx):
    T = int(student.get("T", 0))
    hints = {"linear": "Linear: torch.linspace(1e-4, 0.02, T), both ends included.",
             "cosine": "Cosine: alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi / 2) on t = 0..T, "
                       "beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1), clipped at 0.999."}
    verdicts = []
    for kind in ("linear", "cosine"):
        for key, steps in ((kind, T), (f"{kind}_1000", 1000)):
            want = {key: _diffusers_betas(kind, steps)}
            verdicts.append(expect_close(student, want, key, f"make_beta_schedule('{kind}', {steps}) vs diffusers",
                                         rtol=1e-5, atol=1e-7, hint=hints[kind]))
    return all_of(*verdicts)


def _probe_betas_closed_form(ctx):
    fn = ctx.fn("make_beta_schedule")
    T = int(torch.randint(5, 60, (1,), generator=ctx.generator()))
    return {"T": T, "linear": fn("linear", T), "cosine": fn("cosine", T), "cosine_1": fn("cosine", 1)}


def _judge_betas_closed_form(student, reference, ctx):
    T = int(student.get("T", 0))
    lin = as_array(student.get("linear"), "linear betas").astype(np.float64)
    cos = as_array(student.get("cosine"), "cosine betas").astype(np.float64)
    if lin.shape != (T,) or cos.shape != (T,):
        return _fails("make_beta_schedule", f"expected shape ({T},) for T={T}, got {lin.shape} and {cos.shape}")
    if abs(lin[0] - 1e-4) > 1e-9 or abs(lin[-1] - 0.02) > 1e-9:
        return _fails("make_beta_schedule('linear')", f"must start at 1e-4 and end at 0.02, got {lin[0]:.6g} .. "
                                                      f"{lin[-1]:.6g}")
    f = np.cos((np.arange(T + 1) / T + 0.008) / 1.008 * np.pi / 2) ** 2
    alpha_bar = np.cumprod(1 - cos)
    want = f[1:] / f[0]
    keep = np.minimum.accumulate(1 - f[1:] / f[:-1] < 0.999)  # before any clipping
    if not np.allclose(alpha_bar[keep], want[keep], rtol=1e-5, atol=1e-9):
        return _fails("make_beta_schedule('cosine')", "prod(1 - betas) must equal f(t) / f(0) with "
                      "f(t) = cos^2((t/T + 0.008) / 1.008 * pi / 2) (Nichol & Dhariwal eq. 17); max error "
                      f"{np.abs(alpha_bar[keep] - want[keep]).max():.3g}")
    one = as_array(student.get("cosine_1"), "cosine betas for T=1").astype(np.float64)
    if one.shape != (1,) or not 0 < one[0] <= 0.999 + 1e-9:
        return _fails("make_beta_schedule('cosine', 1)", f"expected one beta clipped to 0.999, got {one}")
    return Verdict(True, "linear endpoints and cosine alpha_bar = f(t)/f(0) hold; betas clipped at 0.999")


def _probe_betas_ref(ctx):
    T = int(torch.randint(10, 300, (1,), generator=ctx.generator()))
    fn = ctx.fn("make_beta_schedule")
    return {"linear": fn("linear", T), "cosine": fn("cosine", T)}


# ----------------------------------------------------------------------------- schedule_from_betas
_FIELDS = ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "posterior_variance",
           "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2")


def _probe_schedule(ctx):
    T = int(torch.randint(20, 80, (1,), generator=ctx.generator()))
    betas = _random_betas(ctx.generator(1), T)
    sched = ctx.fn("schedule_from_betas")(betas.clone())
    out = {"betas_in": betas}
    out.update({f"s_{k}": getattr(sched, k, None) for k in _FIELDS})
    return out


def _judge_schedule_oracle(student, reference, ctx):
    from diffusers import DDPMScheduler

    betas = as_array(student.get("betas_in"), "betas").astype(np.float64)
    T = len(betas)
    sched = DDPMScheduler(num_train_timesteps=T, trained_betas=betas.tolist(), variance_type="fixed_small")
    # diffusers builds its tables in float32, where 1 - alpha_bar near t = 0 loses digits (coef2 at t = 1 was
    # 1e-4 off for some seeds); its formulas are the oracle, so give them float64 tables
    sched.betas = torch.from_numpy(betas)
    sched.alphas = 1 - sched.betas
    sched.alphas_cumprod = torch.cumprod(sched.alphas, 0)
    ab = sched.alphas_cumprod.numpy()
    var = np.array([0.0] + [float(sched._get_variance(t)) for t in range(1, T)])
    abp = np.concatenate([[1.0], ab[:-1]])
    coef1 = np.sqrt(abp) * (1 - ab / abp) / (1 - ab)                    # diffusers' pred_original_sample_coeff
    coef2 = np.sqrt(ab / abp) * (1 - abp) / (1 - ab)                    # diffusers' current_sample_coeff
    want = {"s_alphas_cumprod": ab, "s_posterior_variance": var, "s_posterior_mean_coef1": coef1,
            "s_posterior_mean_coef2": coef2}
    hints = {"s_alphas_cumprod": "alpha_bar_t is the cumulative product of alpha_t = 1 - beta_t (not alpha_t itself).",
             "s_posterior_variance": "beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t, "
                                     "with alpha_bar_{-1} = 1 (so it is 0 at t = 0).",
             "s_posterior_mean_coef1": "coef1 = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t).",
             "s_posterior_mean_coef2": "coef2 = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)."}
    return all_of(*[expect_close(student, want, k, f"schedule_from_betas: {k[2:]} vs diffusers DDPMScheduler",
                                 rtol=1e-4, atol=1e-7, hint=hints[k]) for k in want])


def _judge_schedule_identities(student, reference, ctx):
    betas = as_array(student.get("betas_in"), "betas")
    want = {f"s_{k}": v for k, v in _tables(betas).items()}
    hints = {"s_betas": "Keep the betas you were given.", "s_alphas": "alpha_t = 1 - beta_t.",
             "s_alphas_cumprod_prev": "alpha_bar_{t-1}: alphas_cumprod shifted right by one, with 1 first.",
             "s_posterior_log_variance_clipped": "log(beta_tilde) with entry 0 (log 0) replaced by entry 1.",
             "s_alphas_cumprod": "cumprod of the alphas.", "s_posterior_variance": "eq. 7",
             "s_posterior_mean_coef1": "eq. 7", "s_posterior_mean_coef2": "eq. 7"}
    return all_of(*[expect_close(student, want, k, f"schedule_from_betas: {k[2:]}", rtol=1e-6, atol=1e-9,
                                 hint=hints[k]) for k in want])


def _run_schedule_device(fn):
    def run(device, dtype):
        betas = torch.linspace(1e-3, 0.05, 16, dtype=dtype, device=device)
        sched = fn()(betas)
        return torch.stack([getattr(sched, k) for k in _FIELDS])
    return run


# ----------------------------------------------------------------------------- q_sample / predict_x0
def _q_inputs(ctx, T=50, B=6, dtype=torch.float32):
    betas = _random_betas(ctx.generator(1), T)
    g = ctx.generator(2)
    x0 = (torch.rand(B, 3, 4, 4, generator=g) * 2 - 1).to(dtype)
    noise = torch.randn(B, 3, 4, 4, generator=g).to(dtype)
    t = torch.randint(0, T, (B,), generator=g)
    t[0], t[1] = 0, T - 1
    return betas, x0, noise, t


def _probe_q_sample(ctx):
    betas, x0, noise, t = _q_inputs(ctx)
    out = ctx.fn("q_sample")(x0.clone(), t.clone(), noise.clone(), _schedule(betas))
    return {"betas": betas, "x0": x0, "noise": noise, "t": t, "out": out}


def _judge_q_sample_oracle(student, reference, ctx):
    from diffusers import DDPMScheduler

    betas = as_array(student.get("betas"), "betas")
    sched = DDPMScheduler(num_train_timesteps=len(betas), trained_betas=betas.tolist())
    want = sched.add_noise(_t(student["x0"]).float(), _t(student["noise"]).float(), _t(student["t"]).long())
    return expect_close(student, {"out": want.numpy()}, "out", "q_sample vs diffusers add_noise", rtol=1e-4, atol=1e-5,
                        hint="x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise with alpha_bar = "
                             "schedule.alphas_cumprod indexed at t (0-based: no t - 1).")


def _probe_q_statistics(ctx):
    T, n = 40, 20000
    betas = _random_betas(ctx.generator(1), T)
    # only steps with alpha_bar <= 0.85: near t = 0, x_t ~ x0 whether or not the square roots are there
    noisy_enough = torch.nonzero(torch.cumprod(1 - betas, 0) <= 0.85).flatten()
    t_value = int(noisy_enough[torch.randint(0, len(noisy_enough), (1,), generator=ctx.generator(3))])
    x0 = torch.full((n, 1, 1, 1), 0.7)
    noise = torch.randn(n, 1, 1, 1, generator=ctx.generator(4))
    out = ctx.fn("q_sample")(x0, torch.full((n,), t_value), noise, _schedule(betas))
    out = torch.as_tensor(out).double()
    return {"betas": betas, "t": t_value, "mean": out.mean(), "var": out.var()}


def _judge_q_statistics(student, reference, ctx):
    tab = _tables(as_array(student.get("betas"), "betas"))
    ab = tab["alphas_cumprod"][int(student["t"])]
    mean, var = scalar(student, "mean", "mean of x_t"), scalar(student, "var", "variance of x_t")
    want_mean, want_var = math.sqrt(ab) * 0.7, 1 - ab
    if abs(mean - want_mean) > 0.03 or abs(var - want_var) > 0.05 * max(want_var, 0.05) + 0.01:
        return _fails("q_sample", f"over 20000 draws with x0 = 0.7 at t={student['t']}, x_t has mean {mean:.4f} and "
                                  f"variance {var:.4f}; q(x_t | x0) has mean sqrt(alpha_bar) x0 = {want_mean:.4f} and "
                                  f"variance 1 - alpha_bar = {want_var:.4f}. Missing square roots?")
    return Verdict(True, "q_sample has the mean and variance of q(x_t | x_0)")


def _probe_q_gradient(ctx):
    betas, x0, noise, t = _q_inputs(ctx, B=2, dtype=torch.float64)
    x0, noise = x0[:, :1, :2, :2].requires_grad_(), noise[:, :1, :2, :2].requires_grad_()
    fn, sched = ctx.fn("q_sample"), _schedule(betas)
    return {"ok": _gradcheck(lambda a, b: fn(a, t, b, sched), [x0, noise])}


def _gradcheck(fn, inputs, h=1e-6) -> bool:
    """Central differences vs autograd for a random projection of ``fn(*inputs)`` (float64, tiny inputs).
    (torch.autograd.gradcheck would import sympy, which the sandboxed child may not be able to read.)"""
    out = fn(*inputs)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=out.dtype)
    analytic = torch.autograd.grad((out * weight).sum(), inputs, allow_unused=True)
    for k, (x, grad) in enumerate(zip(inputs, analytic)):
        if grad is None:
            return False
        for i in range(x.numel()):
            values = []
            for step in (h, -h):
                shifted = [y.detach().clone() for y in inputs]
                shifted[k].view(-1)[i] += step
                values.append(float((fn(*shifted) * weight).sum()))
            numeric = (values[0] - values[1]) / (2 * h)
            if not math.isclose(numeric, float(grad.reshape(-1)[i]), rel_tol=1e-4, abs_tol=1e-6):
                return False
    return True


def _judge_gradcheck(function):
    def judge(student, reference, ctx):
        if student.get("ok") is True:
            return Verdict(True, f"{function}: autograd gradients match finite differences in float64")
        return _fails(function, "the autograd gradient disagrees with central finite differences (float64): the "
                                "output is not differentiable in the inputs (a .detach(), .item(), numpy or an "
                                "in-place op on the inputs?)")
    return judge


def _probe_x0(ctx):
    betas, x0, noise, t = _q_inputs(ctx)
    tab = _tables(betas)
    ab = torch.tensor(tab["alphas_cumprod"], dtype=torch.float32)[t][:, None, None, None]
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    t_int = int(t[2])
    fn, sched = ctx.fn("predict_x0"), _schedule(betas)
    return {"x0": x0, "out": fn(x_t, t, noise, sched), "x0_int": x0[2:3],
            "out_int": fn(x_t[2:3], t_int, noise[2:3], sched), "t": t, "x_t": x_t}


def _judge_x0_inverts(student, reference, ctx):
    hint = "x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t), alpha_bar = schedule.alphas_cumprod[t]."
    return all_of(expect_close(student, {"out": student.get("x0")}, "out",
                               "predict_x0(q_sample(x0, t, eps), t, eps) = x0", rtol=1e-3, atol=2e-4, hint=hint),
                  expect_close(student, {"out_int": student.get("x0_int")}, "out_int",
                               "predict_x0 with a python-int t", rtol=1e-3, atol=2e-4,
                               hint="t may be an int: use extract(table, t, x), which accepts both."))


def _probe_x0_gradient(ctx):
    betas, x0, noise, t = _q_inputs(ctx, B=2, dtype=torch.float64)
    x_t, eps = x0[:, :1, :2, :2].requires_grad_(), noise[:, :1, :2, :2].requires_grad_()
    fn, sched = ctx.fn("predict_x0"), _schedule(betas)
    return {"ok": _gradcheck(lambda a, b: fn(a, t, b, sched), [x_t, eps])}


# ----------------------------------------------------------------------------- timestep_embedding
def _probe_embedding(ctx):
    g = ctx.generator()
    t = torch.randint(0, 1000, (7,), generator=g)
    t[0] = 0
    t_float = torch.rand(5, generator=g, dtype=torch.float64) * 999
    fn = ctx.fn("timestep_embedding")
    return {"t": t, "t_float": t_float, "even": fn(t, 32), "odd": fn(t, 7), "float": fn(t_float, 16)}


def _judge_embedding_oracle(student, reference, ctx):
    from diffusers.models.embeddings import get_timestep_embedding

    t, t_float = _t(student["t"]), _t(student["t_float"])
    want = {"even": get_timestep_embedding(t, 32).numpy(), "odd": get_timestep_embedding(t, 7).numpy(),
            "float": get_timestep_embedding(t_float.float(), 16).numpy()}
    hint = ("Expected [sin(t w_0), ..., sin(t w_{h-1}), cos(t w_0), ..., cos(t w_{h-1})] with h = dim // 2 and "
            "w_i = 10000 ** (-i / (h - 1)); sines first; a zero column at the end for odd dim.")
    return all_of(*[expect_close(student, want, k, f"timestep_embedding ({k}) vs diffusers get_timestep_embedding",
                                 rtol=1e-4, atol=5e-4, hint=hint) for k in want])


def _probe_embedding_shape(ctx):
    fn = ctx.fn("timestep_embedding")
    t = torch.arange(3)
    outs = {f"d{d}": fn(t, d) for d in (4, 5, 64)}
    outs["f64"] = fn(t.double(), 6)
    outs["dtypes"] = [str(outs["d4"].dtype), str(outs["f64"].dtype)]
    return outs


def _judge_embedding_shape(student, reference, ctx):
    verdicts = [expect_shape(student, f"d{d}", (3, d), f"timestep_embedding(t (3,), dim={d})") for d in (4, 5, 64)]
    dtypes = student.get("dtypes") or ["?", "?"]
    if dtypes != ["torch.float32", "torch.float64"]:
        verdicts.append(_fails("timestep_embedding",
                               f"integer t must give float32 and float64 t float64; got {dtypes}"))
    return all_of(*verdicts)


# ----------------------------------------------------------------------------- network pieces
def _grads(module: torch.nn.Module) -> list:
    """Names of parameters whose gradient is missing, non-finite or all zero."""
    bad = []
    for name, p in module.named_parameters():
        if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0:
            bad.append(name)
    return bad


def _judge_grads(function):
    def judge(student, reference, ctx):
        bad = student.get("bad")
        if not isinstance(bad, list):
            return _fails(function, "the gradient probe returned nothing readable")
        if bad:
            return _fails(function, f"these parameters get no (or a zero) gradient from the output: {bad[:8]}. A layer "
                                    "created in __init__ but not used in forward (e.g. the embedding projection), or a "
                                    ".detach() in the way?")
        if student.get("n_params", 0) == 0:
            return _fails(function, "the module has no parameters")
        return Verdict(True, f"{function}: every parameter ({student['n_params']} tensors) receives a gradient")
    return judge


def _resblock_inputs(g, c_in, emb_dim, size=6, B=2):
    return torch.randn(B, c_in, size, size, generator=g), torch.randn(B, emb_dim, generator=g)


def _probe_resblock_shape(ctx):
    cls = ctx.fn("ResBlock")
    x, emb = _resblock_inputs(ctx.generator(), 16, 24)
    change, same = cls(16, 32, 24), cls(16, 16, 24)
    names = sorted(n for n, _ in change.named_children())
    return {"change": change(x, emb), "same": same(x, emb), "names": names}


def _judge_resblock_shape(student, reference, ctx):
    names = set(student.get("names") or [])
    missing = sorted({"norm1", "conv1", "emb_proj", "norm2", "conv2", "skip"} - names)
    if missing:
        return _fails("ResBlock", f"missing the documented layer attributes {missing} (found {sorted(names)})")
    return all_of(expect_shape(student, "change", (2, 32, 6, 6), "ResBlock(16, 32, 24) on (2, 16, 6, 6)",
                               "The skip path needs a 1x1 convolution when the channel count changes."),
                  expect_shape(student, "same", (2, 16, 6, 6), "ResBlock(16, 16, 24) on (2, 16, 6, 6)"))


def _probe_resblock_depends(ctx):
    torch.manual_seed(ctx.seed)
    block = ctx.fn("ResBlock")(16, 16, 24)
    x, emb = _resblock_inputs(ctx.generator(), 16, 24)
    x2, emb2 = _resblock_inputs(ctx.generator(1), 16, 24)
    with torch.no_grad():
        base = block(x, emb)
        return {"d_emb": (block(x, emb2) - base).abs().max(), "d_x": (block(x2, emb) - base).abs().max()}


def _judge_depends(function, keys):
    def judge(student, reference, ctx):
        for key, what in keys.items():
            value = scalar(student, key, key)
            if not value > 1e-6:
                return _fails(function, f"changing {what} does not change the output (max change {value:.3g}): "
                                        f"it is ignored.")
        return Verdict(True, f"{function} depends on " + ", ".join(keys.values()))
    return judge


def _probe_resblock_ref(ctx):
    cls = ctx.fn("ResBlock")
    outs = {}
    for name, (c_in, c_out) in {"change": (16, 24), "same": (16, 16)}.items():
        torch.manual_seed(ctx.seed)
        block = cls(c_in, c_out, 20)
        x, emb = _resblock_inputs(ctx.generator(1), c_in, 20)
        x.requires_grad_(True), emb.requires_grad_(True)
        out = block(x, emb)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.update({f"{name}_out": out, f"{name}_dx": x.grad, f"{name}_demb": emb.grad,
                     f"{name}_params": sum(p.numel() for p in block.parameters())})
    return outs


def _probe_resblock_grads(ctx):
    torch.manual_seed(ctx.seed)
    block = ctx.fn("ResBlock")(16, 24, 20)
    x, emb = _resblock_inputs(ctx.generator(1), 16, 20)
    block(x, emb).square().mean().backward()
    return {"bad": _grads(block), "n_params": len(list(block.parameters()))}


def _probe_attention_shape(ctx):
    cls = ctx.fn("AttentionBlock")
    x = torch.randn(2, 16, 4, 6, generator=ctx.generator())
    return {"one": cls(16)(x), "four": cls(16, num_heads=4)(x),
            "names": sorted(n for n, _ in cls(16).named_children())}


def _judge_attention_shape(student, reference, ctx):
    names = set(student.get("names") or [])
    missing = sorted({"norm", "qkv", "proj"} - names)
    if missing:
        return _fails("AttentionBlock", f"missing the documented layer attributes {missing} (found {sorted(names)})")
    return all_of(expect_shape(student, "one", (2, 16, 4, 6), "AttentionBlock(16) on (2, 16, 4, 6)"),
                  expect_shape(student, "four", (2, 16, 4, 6), "AttentionBlock(16, num_heads=4) on (2, 16, 4, 6)"))


def _probe_attention_mixing(ctx):
    torch.manual_seed(ctx.seed)
    block = ctx.fn("AttentionBlock")(16, num_heads=2)
    x = torch.randn(1, 16, 4, 4, generator=ctx.generator())
    perm = torch.randperm(16, generator=ctx.generator(1))
    with torch.no_grad():
        out = block(x)
        out_perm = block(x.flatten(2)[:, :, perm].reshape(1, 16, 4, 4))
        x_far = x.clone()
        x_far[:, :, 0, 0] += 3.0
        far_change = (block(x_far) - out)[:, :, 3, 3].abs().max()
    return {"perm_of_out": out.flatten(2)[:, :, perm], "out_of_perm": out_perm.flatten(2), "far": far_change}


def _judge_attention_mixing(student, reference, ctx):
    far = scalar(student, "far", "change at the far pixel")
    if not far > 1e-6:
        return _fails("AttentionBlock", "changing pixel (0, 0) leaves pixel (3, 3) unchanged: every position must "
                                        "attend to every other (softmax over all H*W keys).")
    return expect_close(student, {"out_of_perm": student.get("perm_of_out")}, "out_of_perm",
                        "AttentionBlock(permuted pixels) = permuted AttentionBlock(pixels)", rtol=1e-4, atol=1e-5,
                        hint="Self-attention without positional encodings treats positions as a set: use only 1x1 "
                             "convolutions, GroupNorm and attention over the flattened H*W axis.")


def _probe_attention_ref(ctx):
    cls = ctx.fn("AttentionBlock")
    outs = {}
    for heads in (1, 4):
        torch.manual_seed(ctx.seed)
        block = cls(16, num_heads=heads)
        x = torch.randn(2, 16, 4, 4, generator=ctx.generator(heads)).requires_grad_(True)
        out = block(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.update({f"h{heads}_out": out, f"h{heads}_dx": x.grad})
    return outs


def _probe_attention_grads(ctx):
    torch.manual_seed(ctx.seed)
    block = ctx.fn("AttentionBlock")(16, num_heads=2)
    block(torch.randn(2, 16, 4, 4, generator=ctx.generator())).square().mean().backward()
    return {"bad": _grads(block), "n_params": len(list(block.parameters()))}


# ----------------------------------------------------------------------------- UNet
_TINY = dict(in_channels=3, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attn_levels=(1,),
             num_classes=3, use_view=True)


def _unet_inputs(g, B=3, size=8, T=100):
    x = torch.randn(B, 3, size, size, generator=g)
    t = torch.randint(0, T, (B,), generator=g)
    cond = {"label": torch.tensor([0, 2, -1, 1, 0, -1][:B]), "view": torch.rand(B, 2, generator=g) * 3 - 1.5}
    return x, t, cond


def _probe_unet_shape(ctx):
    cls = ctx.fn("UNet")
    g = ctx.generator()
    out = {}
    x, t, cond = _unet_inputs(g)
    out["tiny"] = cls(**_TINY)(x, t, cond)
    x16, t16, _ = _unet_inputs(g, size=16)
    out["uncond16"] = cls(base_channels=8, channel_mults=(1, 2, 2), attn_levels=(2,))(x16, t16, None)
    out["label16"] = cls(base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=2, attn_levels=(1, 2),
                         num_classes=3)(x16, t16, {"label": cond["label"]})
    x32 = torch.randn(2, 3, 32, 32, generator=g)
    out["view32"] = cls(base_channels=8, channel_mults=(1, 2, 2, 2), attn_levels=(3,), num_classes=5, use_view=True)(
        x32, torch.tensor([0, 999]), {"label": torch.tensor([4, -1]), "view": torch.zeros(2, 2)})
    return out


def _judge_unet_shape(student, reference, ctx):
    return all_of(expect_shape(student, "tiny", (3, 3, 8, 8), "UNet (2 levels, label + view) on 8x8"),
                  expect_shape(student, "uncond16", (3, 3, 16, 16), "unconditional UNet (cond=None) on 16x16"),
                  expect_shape(student, "label16", (3, 3, 16, 16), "UNet with 2 ResBlocks per level on 16x16"),
                  expect_shape(student, "view32", (2, 3, 32, 32), "UNet with 4 levels on 32x32"))


def _probe_unet_depends(ctx):
    torch.manual_seed(ctx.seed)
    model = ctx.fn("UNet")(**_TINY)
    x, t, cond = _unet_inputs(ctx.generator())
    with torch.no_grad():
        base = model(x, t, cond)
        other_label = {**cond, "label": torch.tensor([1, 0, 0])}
        other_view = {**cond, "view": cond["view"] + 1.0}
        null = model(x, t, {**cond, "label": torch.full((3,), -1)})
        zero = model(x, t, {**cond, "label": torch.zeros(3, dtype=torch.long)})
        plain = ctx.fn("UNet")(**{**_TINY, "use_view": False})
        null_plain = plain(x, t, {"label": torch.full((3,), -1)})
        return {"d_t": (model(x, (t + 37) % 100, cond) - base).abs().max(),
                "d_label": (model(x, t, other_label) - base)[:2].abs().max(),
                "d_null": (null - zero).flatten(1).abs().max(1).values.min(),
                "d_view": (model(x, t, other_view) - base).abs().max(),
                "none_vs_null": (plain(x, t, None) - null_plain).abs().max()}


def _judge_unet_depends(student, reference, ctx):
    what = {"d_t": "the timestep t", "d_label": "the category label",
            "d_null": "a label 0 to NULL_LABEL (-1) (the null token needs its own embedding row)", "d_view": "the view"}
    verdict = _judge_depends("UNet", what)(student, None, ctx)
    if not verdict.passed:
        return verdict
    if not scalar(student, "none_vs_null", "cond=None vs null labels") < 1e-5:
        return _fails("UNet", "cond=None must mean 'every label is NULL_LABEL' (the unconditional model), but it "
                              "gives a different output than labels of -1.")
    return Verdict(True, "UNet depends on t, the label (with a null token), and the view; cond=None = null labels")


def _probe_unet_grads(ctx):
    torch.manual_seed(ctx.seed)
    model = ctx.fn("UNet")(**_TINY)
    x, t, cond = _unet_inputs(ctx.generator(), B=6)
    model(x, t, cond).square().mean().backward()
    return {"bad": _grads(model), "n_params": len(list(model.parameters()))}


def _probe_unet_ref(ctx):
    torch.manual_seed(ctx.seed)
    model = ctx.fn("UNet")(**_TINY)
    x, t, cond = _unet_inputs(ctx.generator(1))
    return {"out": model(x, t, cond), "params": sum(p.numel() for p in model.parameters())}


def _run_unet_device(fn):
    def run(device, dtype):
        torch.manual_seed(0)
        model = fn()(**_TINY).to(device=device, dtype=dtype)
        x, t, cond = _unet_inputs(torch.Generator().manual_seed(1))
        cond = {"label": cond["label"].to(device), "view": cond["view"].to(device, dtype)}
        with torch.no_grad():
            return model(x.to(device, dtype), t.to(device), cond)
    return run


# ----------------------------------------------------------------------------- diffusion_loss
class _Recorder(torch.nn.Module):
    """A fake eps-model: returns ``scale * x`` and records what it was given."""

    def __init__(self, scale=0.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(float(scale)))
        self.calls = []

    def forward(self, x, t, cond):
        self.calls.append({"x": x.detach(), "t": torch.as_tensor(t).detach().clone(),
                           "cond": None if cond is None else {k: v.detach().clone() for k, v in cond.items()}})
        return self.w * x


def _probe_loss_perfect(ctx):
    T, B = 30, 64
    betas = _random_betas(ctx.generator(1), T)
    sched = _schedule(betas)
    x0 = torch.rand(B, 3, 4, 4, generator=ctx.generator(2)) * 2 - 1
    ab = torch.tensor(_tables(betas)["alphas_cumprod"], dtype=torch.float32)

    def perfect(x_t, t, cond):  # the exact noise, recovered from x_t and the known x0
        a = ab[torch.as_tensor(t).long().clamp(0, T - 1)][:, None, None, None]
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    loss_fn = ctx.fn("diffusion_loss")
    perfect_loss = loss_fn(perfect, x0, sched, None, 0.0, ctx.generator(3))
    zero_loss = loss_fn(lambda x_t, t, cond: torch.zeros_like(x_t), x0, sched, None, 0.0, ctx.generator(4))
    return {"perfect": perfect_loss, "zero": zero_loss}


def _judge_loss_perfect(student, reference, ctx):
    perfect, zero = scalar(student, "perfect", "loss of the perfect model"), scalar(student, "zero", "loss of eps = 0")
    if not perfect < 1e-6:
        return _fails("diffusion_loss", f"a model that returns the exact noise of x_t = sqrt(a_bar_t) x0 + "
                                        f"sqrt(1 - a_bar_t) eps gets loss {perfect:.4g}, not 0: x_t must be "
                                        "q_sample(x0, t, noise) with the same t you pass to the model, and the "
                                        "target must be that noise.")
    if not 0.85 < zero < 1.15:
        return _fails("diffusion_loss", f"a model that always predicts 0 gets loss {zero:.4g}; the mean of eps^2 is "
                                        "about 1. Use the mean (not the sum) of the squared error over all elements.")
    return Verdict(True, "diffusion_loss is 0 for the exact noise and ~1 for a zero prediction")


def _probe_loss_draws(ctx):
    T, B, p = 10, 4000, 0.3
    sched = _schedule(_random_betas(ctx.generator(1), T))
    x0 = torch.rand(B, 1, 1, 1, generator=ctx.generator(2)) * 2 - 1
    label = torch.randint(0, 5, (B,), generator=ctx.generator(3))
    view = torch.rand(B, 2, generator=ctx.generator(4))
    cond = {"label": label.clone(), "view": view.clone()}
    model = _Recorder()
    loss_fn = ctx.fn("diffusion_loss")
    loss_fn(model, x0, sched, cond, p, ctx.generator(5))
    loss_fn(model, x0, sched, {"label": label.clone(), "view": view.clone()}, 0.0, ctx.generator(6))
    loss_fn(model, x0, sched, None, 0.5, ctx.generator(7))
    calls = model.calls
    if len(calls) != 3:
        return {"n_calls": len(calls)}
    first, second, third = calls
    got = first["cond"] or {}
    return {"n_calls": 3, "T": T, "t": first["t"], "label_in": label, "label_seen": got.get("label"),
            "view_in": view, "view_seen": got.get("view"), "cond_untouched": bool(torch.equal(cond["label"], label)),
            "label_seen_p0": (second["cond"] or {}).get("label"), "none_ok": third["cond"] is None
            or third["cond"].get("label") is None or bool((third["cond"]["label"] == NULL).all())}


def _judge_loss_draws(student, reference, ctx):
    if student.get("n_calls") != 3:
        return _fails("diffusion_loss", f"expected one model call per loss, got {student.get('n_calls')} for 3 losses")
    T = int(student["T"])
    t = as_array(student.get("t"), "t given to the model").astype(np.int64)
    counts = np.bincount(t.clip(0, T), minlength=T + 1)
    if t.min() < 0 or t.max() > T - 1 or counts[0] == 0 or counts[T - 1] == 0 or counts[T] > 0:
        return _fails("diffusion_loss", f"t must be uniform on {{0, ..., {T - 1}}} (0-based); the model saw t in "
                                        f"[{t.min()}, {t.max()}] with counts {counts.tolist()}. An off-by-one range?")
    expected = len(t) / T
    if np.abs(counts[:T] - expected).max() > 6 * math.sqrt(expected):
        return _fails("diffusion_loss", f"t is not uniform: counts {counts[:T].tolist()} for {len(t)} draws")
    label_in, seen = as_array(student.get("label_in"), "labels"), as_array(student.get("label_seen"), "labels seen")
    if seen.shape != label_in.shape:
        return _fails("diffusion_loss", "the model did not receive cond['label'] with one label per image")
    dropped = seen != label_in
    if not np.all(seen[dropped] == NULL):
        return _fails("diffusion_loss", "a dropped label must become NULL_LABEL (-1); got other values")
    if abs(dropped.mean() - 0.3) > 0.04:
        return _fails("diffusion_loss", f"with p_uncond=0.3, {dropped.mean():.3f} of the labels were dropped")
    if not np.array_equal(as_array(student.get("label_seen_p0"), "labels with p_uncond=0"), label_in):
        return _fails("diffusion_loss", "with p_uncond=0 no label may be dropped")
    if not np.allclose(as_array(student.get("view_seen"), "views seen"), as_array(student.get("view_in"), "views")):
        return _fails("diffusion_loss", "the view must reach the model unchanged (only the label is dropped)")
    if not student.get("cond_untouched"):
        return _fails("diffusion_loss", "the caller's cond dict was modified in place: build a new dict")
    if not student.get("none_ok"):
        return _fails("diffusion_loss", "cond=None must stay unconditional")
    return Verdict(True, "t uniform on 0..T-1, labels dropped to NULL_LABEL with probability p_uncond, views kept")


class _FakeEps(torch.nn.Module):
    """A fixed eps-model that depends on x, t, the label and the view (for reference comparisons)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x, t, cond):
        b = x.shape[0]
        cond = cond or {}
        label = cond.get("label")
        label = torch.full((b,), NULL, device=x.device) if label is None else label
        view = cond.get("view")
        view = torch.zeros(b, 2, device=x.device, dtype=x.dtype) if view is None else view.to(x.dtype)
        t = torch.as_tensor(t, device=x.device).to(x.dtype).reshape(-1)
        shift = 0.3 * torch.sin(t / 7.0) + 0.2 * (label + 1).to(x.dtype) + 0.1 * view[:, 0]
        return self.w * (0.3 * x + shift[:, None, None, None] * torch.linspace(-1, 1, x.shape[-1], device=x.device,
                                                                               dtype=x.dtype))


def _probe_loss_ref(ctx):
    T, B = 50, 16
    sched = _schedule(_random_betas(ctx.generator(1), T))
    x0 = torch.rand(B, 3, 4, 4, generator=ctx.generator(2)) * 2 - 1
    cond = {"label": torch.randint(0, 5, (B,), generator=ctx.generator(3)),
            "view": torch.rand(B, 2, generator=ctx.generator(5))}
    model = _FakeEps()
    loss = ctx.fn("diffusion_loss")(model, x0, sched, cond, 0.4, ctx.generator(4))
    loss.backward()
    return {"loss": torch.as_tensor(loss).reshape(1), "grad": model.w.grad.reshape(1)}


def _probe_loss_grads(ctx):
    sched = _schedule(_random_betas(ctx.generator(1), 20))
    model = _Recorder(scale=0.5)
    loss = ctx.fn("diffusion_loss")(model, torch.rand(4, 3, 4, 4, generator=ctx.generator(2)), sched,
                                    {"label": torch.zeros(4, dtype=torch.long)}, 0.1, ctx.generator(3))
    loss.backward()
    return {"bad": _grads(model), "n_params": 1}


def _run_loss_device(fn):
    def run(device, dtype):
        sched = _schedule(_random_betas(torch.Generator().manual_seed(1), 20), device=device)
        x0 = (torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1).to(device, dtype)
        cond = {"label": torch.tensor([0, 1, 2, 3], device=device), "view": torch.zeros(4, 2, device=device)}
        return fn()(_FakeEps().to(device, dtype), x0, sched, cond, 0.5, torch.Generator().manual_seed(3)).reshape(1)
    return run


# ----------------------------------------------------------------------------- p_sample_step
def _step_inputs(ctx, T=50, B=4):
    betas = _random_betas(ctx.generator(1), T)
    x_t = torch.randn(B, 3, 4, 4, generator=ctx.generator(2)) * 1.5
    t = int(torch.randint(1, T, (1,), generator=ctx.generator(3)))
    noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator(4)))
    return betas, x_t, t, noise_seed


def _probe_p_step_oracle(ctx):
    betas, x_t, t, noise_seed = _step_inputs(ctx)
    fn, sched = ctx.fn("p_sample_step"), _schedule(betas)
    noise = _check_seed_noise(noise_seed, x_t.shape)
    out = {"betas": betas, "x_t": x_t, "t": t, "noise_seed": noise_seed}
    for clip in (True, False):
        out[f"mid_{clip}"] = fn(0.1 * x_t, x_t.clone(), t, sched, noise.clone(), clip)
        out[f"last_{clip}"] = fn(0.1 * x_t, x_t.clone(), 0, sched, noise.clone(), clip)
    return out


def _judge_p_step_oracle(student, reference, ctx):
    from diffusers import DDPMScheduler

    betas = as_array(student.get("betas"), "betas")
    x_t, t, seed = _t(student["x_t"]).float(), int(student["t"]), int(student["noise_seed"])
    verdicts = []
    for clip in (True, False):
        sched = DDPMScheduler(num_train_timesteps=len(betas), trained_betas=betas.tolist(), clip_sample=clip,
                              variance_type="fixed_small")
        for key, step in ((f"mid_{clip}", t), (f"last_{clip}", 0)):
            want = sched.step(0.1 * x_t, step, x_t, generator=torch.Generator().manual_seed(seed)).prev_sample
            verdicts.append(expect_close(student, {key: want.numpy()}, key,
                                         f"p_sample_step(t={step}, clip_denoised={clip}) with eps = 0.1 x_t vs "
                                         "diffusers DDPMScheduler.step", rtol=1e-4, atol=1e-5,
                                         hint="x0_hat (eq. 15), clamp if clip_denoised, mean = coef1 x0_hat + coef2 x_t, "
                                              "plus exp(0.5 log_var_t) z except at t = 0."))
    return all_of(*verdicts)


def _probe_p_step_last(ctx):
    betas, x_t, _, _ = _step_inputs(ctx)
    fn, sched = ctx.fn("p_sample_step"), _schedule(betas)
    eps = torch.randn(x_t.shape, generator=ctx.generator(5))
    a = fn(eps, x_t.clone(), 0, sched, torch.randn(x_t.shape, generator=ctx.generator(6)), False)
    b = fn(eps, x_t.clone(), 0, sched, torch.randn(x_t.shape, generator=ctx.generator(7)), False)
    ab0 = float(_tables(betas)["alphas_cumprod"][0])
    return {"a": a, "b": b, "x0_hat": (x_t - math.sqrt(1 - ab0) * eps) / math.sqrt(ab0)}


def _judge_p_step_last(student, reference, ctx):
    a, b = as_array(student.get("a"), "x_{-1}"), as_array(student.get("b"), "x_{-1} with other noise")
    if a.shape == b.shape and not np.allclose(a, b, atol=1e-6):
        return _fails("p_sample_step", "at the last step (t = 0) the output changes with the noise: no noise may be "
                                       "added there (Algorithm 2: z = 0 when t = 1).")
    return expect_close(student, {"a": student.get("x0_hat")}, "a", "p_sample_step at t = 0 returns x0_hat",
                        rtol=1e-4, atol=1e-5, hint="At t = 0 the posterior mean is x0_hat itself (coef1 = 1, coef2 = 0).")


def _probe_p_step_ref(ctx):
    betas, x_t, t, noise_seed = _step_inputs(ctx, T=80)
    eps = torch.randn(x_t.shape, generator=ctx.generator(5))
    noise = _check_seed_noise(noise_seed, x_t.shape)
    fn, sched = ctx.fn("p_sample_step"), _schedule(betas)
    return {"clip": fn(eps, x_t.clone(), t, sched, noise, True), "free": fn(eps, x_t.clone(), t, sched, noise, False),
            "t1": fn(eps, x_t.clone(), 1, sched, noise, False)}


def _run_p_step_device(fn):
    def run(device, dtype):
        g = torch.Generator().manual_seed(0)
        sched = _schedule(_random_betas(g, 30), device=device)
        x, eps, z = (torch.randn(2, 3, 4, 4, generator=g).to(device, dtype) for _ in range(3))
        return torch.stack([fn()(eps, x, 17, sched, z, True), fn()(eps, x, 0, sched, z, False)])
    return run


# ----------------------------------------------------------------------------- ddim_step / ddim_timesteps
def _probe_ddim_oracle(ctx):
    T = 100
    betas = _random_betas(ctx.generator(1), T)
    x_t = torch.randn(3, 3, 4, 4, generator=ctx.generator(2)) * 1.5
    noise = torch.randn(3, 3, 4, 4, generator=ctx.generator(3))
    t = 10 * int(torch.randint(2, 10, (1,), generator=ctx.generator(4))) + 7
    fn, sched = ctx.fn("ddim_step"), _schedule(betas)
    out = {"betas": betas, "x_t": x_t, "noise": noise, "t": t}
    for eta in (0.0, 0.6):
        for clip in (True, False):
            out[f"mid_{eta}_{clip}"] = fn(0.1 * x_t, x_t.clone(), t, t - 10, sched, eta, noise.clone(), clip)
            out[f"last_{eta}_{clip}"] = fn(0.1 * x_t, x_t.clone(), 9, -1, sched, eta, noise.clone(), clip)
    return out


def _judge_ddim_oracle(student, reference, ctx):
    from diffusers import DDIMScheduler

    betas = as_array(student.get("betas"), "betas")
    x_t, noise, t = _t(student["x_t"]).float(), _t(student["noise"]).float(), int(student["t"])
    verdicts = []
    for eta in (0.0, 0.6):
        for clip in (True, False):
            sched = DDIMScheduler(num_train_timesteps=len(betas), trained_betas=betas.tolist(), clip_sample=clip,
                                  set_alpha_to_one=True, timestep_spacing="leading")
            sched.set_timesteps(10)
            for key, step, prev in ((f"mid_{eta}_{clip}", t, t - 10), (f"last_{eta}_{clip}", 9, -1)):
                want = sched.step(0.1 * x_t, step, x_t, eta=eta, variance_noise=noise).prev_sample
                verdicts.append(expect_close(
                    student, {key: want.numpy()}, key,
                    f"ddim_step({step} -> {prev}, eta={eta}, clip_denoised={clip}) vs diffusers DDIMScheduler.step",
                    rtol=1e-4, atol=1e-5, hint="x_prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma^2) eps + sigma z, "
                                               "sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev), "
                                               "a_prev = 1 when t_prev = -1; clamp only x0_hat, keep the model's eps."))
    return all_of(*verdicts)


def _probe_ddim_inverts(ctx):
    T = 100
    sched = _schedule(_random_betas(ctx.generator(1), T))
    x = torch.randn(2, 3, 4, 4, generator=ctx.generator(2), dtype=torch.float64)
    eps = torch.randn(2, 3, 4, 4, generator=ctx.generator(3), dtype=torch.float64)
    fn = ctx.fn("ddim_step")
    t = int(torch.randint(50, 100, (1,), generator=ctx.generator(4)))
    s = int(torch.randint(0, 50, (1,), generator=ctx.generator(5)))
    z1, z2 = (torch.randn(2, 3, 4, 4, generator=ctx.generator(k), dtype=torch.float64) for k in (6, 7))
    down = fn(eps, x.clone(), t, s, sched, 0.0, z1, False)
    again = fn(eps, x.clone(), t, s, sched, 0.0, z2, False)
    back = fn(eps, down.clone(), s, t, sched, 0.0, None, False)
    return {"x": x, "down": down, "again": again, "back": back}


def _judge_ddim_inverts(student, reference, ctx):
    return all_of(expect_close(student, {"again": student.get("down")}, "again",
                               "ddim_step with eta = 0 called twice (different noise arguments)", rtol=0, atol=1e-12,
                               hint="With eta = 0 the step is deterministic: sigma = 0, the noise is not used."),
                  expect_close(student, {"back": student.get("x")}, "back",
                               "ddim_step(t -> s) then ddim_step(s -> t) with the same eps (eta = 0): DDIM inversion",
                               rtol=1e-6, atol=1e-8,
                               hint="x_s = sqrt(a_s) x0_hat + sqrt(1 - a_s) eps with no clipping; the formula must also "
                                    "work for t_prev > t when eta = 0."))


def _probe_ddim_eta_one(ctx):
    T = 60
    betas = _random_betas(ctx.generator(1), T)
    x = torch.randn(2, 3, 4, 4, generator=ctx.generator(2), dtype=torch.float64)
    eps = torch.randn(2, 3, 4, 4, generator=ctx.generator(3), dtype=torch.float64)
    z = torch.randn(2, 3, 4, 4, generator=ctx.generator(4), dtype=torch.float64)
    t = int(torch.randint(1, T, (1,), generator=ctx.generator(5)))
    return {"betas": betas, "x": x, "eps": eps, "z": z, "t": t,
            "out": ctx.fn("ddim_step")(eps, x, t, t - 1, _schedule(betas), 1.0, z, False)}


def _judge_ddim_eta_one(student, reference, ctx):
    tab = _tables(as_array(student.get("betas"), "betas"))
    t = int(student["t"])
    x, eps, z = (as_array(student.get(k), k) for k in ("x", "eps", "z"))
    x0 = (x - math.sqrt(1 - tab["alphas_cumprod"][t]) * eps) / math.sqrt(tab["alphas_cumprod"][t])
    mean = tab["posterior_mean_coef1"][t] * x0 + tab["posterior_mean_coef2"][t] * x
    want = mean + np.sqrt(tab["posterior_variance"][t]) * z
    return expect_close(student, {"out": want}, "out", "ddim_step(t -> t - 1, eta = 1) = DDPM's posterior step",
                        rtol=1e-6, atol=1e-9, hint="sigma = eta sqrt((1 - a_prev)/(1 - a_t)) sqrt(1 - a_t/a_prev) "
                                                   "(DDIM eq. 16): at eta = 1 it is sqrt(beta_tilde_t).")


def _probe_ddim_ref(ctx):
    T = 120
    sched = _schedule(_random_betas(ctx.generator(1), T))
    x = torch.randn(3, 3, 4, 4, generator=ctx.generator(2))
    eps, z = torch.randn(3, 3, 4, 4, generator=ctx.generator(3)), torch.randn(3, 3, 4, 4, generator=ctx.generator(4))
    t = int(torch.randint(30, T, (1,), generator=ctx.generator(5)))
    s = int(torch.randint(0, 29, (1,), generator=ctx.generator(6)))
    fn = ctx.fn("ddim_step")
    return {"eta0": fn(eps, x, t, s, sched, 0.0, None, True), "eta07": fn(eps, x, t, s, sched, 0.7, z, True),
            "final": fn(eps, x, t, -1, sched, 0.0, None, False)}


def _run_ddim_device(fn):
    def run(device, dtype):
        g = torch.Generator().manual_seed(0)
        sched = _schedule(_random_betas(g, 30), device=device)
        x, eps, z = (torch.randn(2, 3, 4, 4, generator=g).to(device, dtype) for _ in range(3))
        return torch.stack([fn()(eps, x, 20, 5, sched, 0.5, z, True), fn()(eps, x, 20, -1, sched, 0.0, None, False)])
    return run


_GRIDS = [(1000, 50), (1000, 7), (100, 100), (37, 5), (10, 2), (10, 1)]


def _probe_grid(ctx):
    g = ctx.generator()
    T = int(torch.randint(20, 2000, (1,), generator=g))
    S = int(torch.randint(2, T + 1, (1,), generator=g))
    pairs = _GRIDS + [(T, S)]
    fn = ctx.fn("ddim_timesteps")
    out = {"pairs": [list(p) for p in pairs]}
    for i, (T, S) in enumerate(pairs):
        grid = fn(T, S)
        out[f"g{i}"] = torch.as_tensor(grid)
        out[f"int{i}"] = not torch.as_tensor(grid).is_floating_point()
    return out


def _judge_grid(student, reference, ctx):
    for i, (T, S) in enumerate(student.get("pairs") or []):
        grid = as_array(student.get(f"g{i}"), f"ddim_timesteps({T}, {S})").astype(np.int64)
        label = f"ddim_timesteps({T}, {S}) = {grid.tolist()[:6]}{' ...' if len(grid) > 6 else ''}"
        if not student.get(f"int{i}"):
            return _fails(label, "timesteps must be an integer tensor (long)")
        if grid.shape != (S,):
            return _fails(label, f"expected {S} timesteps, got shape {grid.shape}")
        if grid[0] != T - 1:
            return _fails(label, f"the grid must start at the noisiest step T - 1 = {T - 1}, not {grid[0]}: a grid "
                                 "that never visits the last timestep feeds pure noise to the model as a less noisy step")
        if S >= 2 and (grid[-1] != 0 or not np.all(np.diff(grid) < 0)):
            return _fails(label, "the grid must decrease strictly and end at 0")
        if S >= 2:
            gaps = -np.diff(grid)
            if gaps.max() - gaps.min() > 1:
                return _fails(label, f"steps must be evenly spaced (gaps differ by at most 1), got gaps "
                                     f"{sorted(set(gaps.tolist()))[:6]}")
    return Verdict(True, "DDIM grids start at T - 1, end at 0, decrease evenly")


def _judge_grid_ref(student, reference, ctx):
    for i, (T, S) in enumerate(student.get("pairs") or []):
        got, want = as_array(student.get(f"g{i}"), "grid"), as_array(reference.get(f"g{i}"), "reference grid")
        if got.shape != want.shape or np.abs(got.astype(np.int64) - want.astype(np.int64)).max() > 1:
            return _fails(f"ddim_timesteps({T}, {S})", f"got {got.tolist()[:8]}, expected (within 1) "
                                                       f"{want.tolist()[:8]}: round(linspace(T - 1, 0, S))")
    return Verdict(True, "ddim_timesteps matches the reference grids")


# ----------------------------------------------------------------------------- guidance
def _probe_cfg(ctx):
    g = ctx.generator()
    u, c = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    s = float(torch.rand(1, generator=g) * 6 + 1.5)
    fn = ctx.fn("classifier_free_guidance")
    return {"u": u, "c": c, "s": s, "s0": fn(u, c, 0.0), "s1": fn(u, c, 1.0), "ss": fn(u, c, s)}


def _judge_cfg(student, reference, ctx):
    u, c, s = as_array(student.get("u"), "eps_uncond"), as_array(student.get("c"), "eps_cond"), float(student["s"])
    hint = "eps_uncond + scale * (eps_cond - eps_uncond): scale 0 is unconditional, 1 conditional."
    return all_of(expect_close(student, {"s0": u}, "s0", "classifier_free_guidance(scale=0) = eps_uncond", hint=hint),
                  expect_close(student, {"s1": c}, "s1", "classifier_free_guidance(scale=1) = eps_cond", hint=hint),
                  expect_close(student, {"ss": u + s * (c - u)}, "ss", f"classifier_free_guidance(scale={s:.3f})",
                               hint=hint))


def _probe_cfg_gradient(ctx):
    g = ctx.generator()
    u = torch.randn(2, 3, generator=g, dtype=torch.float64).requires_grad_()
    c = torch.randn(2, 3, generator=g, dtype=torch.float64).requires_grad_()
    fn = ctx.fn("classifier_free_guidance")
    return {"ok": _gradcheck(lambda a, b: fn(a, b, 3.5), [u, c])}


def _probe_predict_eps(ctx):
    g = ctx.generator()
    x = torch.randn(3, 3, 4, 4, generator=g)
    t = torch.randint(0, 100, (3,), generator=g)
    cond = {"label": torch.tensor([0, 3, -1]), "view": torch.rand(3, 2, generator=g)}
    model, fn = _FakeEps(), ctx.fn("predict_eps")
    with torch.no_grad():
        want_c = model(x, t, cond)
        want_u = model(x, t, {"label": torch.full((3,), NULL), "view": cond["view"]})
        s = float(torch.rand(1, generator=g) * 5 + 1.5)
        return {"s": s, "want_c": want_c, "want_u": want_u, "ss": fn(model, x, t, dict(cond), s),
                "s1": fn(model, x, t, dict(cond), 1.0), "s0": fn(model, x, t, dict(cond), 0.0),
                "int_t": fn(model, x, 42, dict(cond), s), "want_int": model(x, torch.full((3,), 42), cond) * s
                + (1 - s) * model(x, torch.full((3,), 42), {**cond, "label": torch.full((3,), NULL)}),
                "none": fn(model, x, t, None, s), "want_none": model(x, t, None)}


def _judge_predict_eps(student, reference, ctx):
    s = float(student["s"])
    u, c = as_array(student.get("want_u"), "uncond"), as_array(student.get("want_c"), "cond")
    hint = ("The unconditional prediction uses the same x_t, t and view with every label set to NULL_LABEL; "
            "combine with classifier_free_guidance(eps_uncond, eps_cond, s).")
    return all_of(expect_close(student, {"s1": c}, "s1", "predict_eps(guidance_scale=1) = model(x_t, t, cond)",
                               hint=hint),
                  expect_close(student, {"s0": u}, "s0", "predict_eps(guidance_scale=0) = model with null labels",
                               hint=hint),
                  expect_close(student, {"ss": u + s * (c - u)}, "ss", f"predict_eps(guidance_scale={s:.3f})",
                               hint=hint),
                  expect_close(student, {"int_t": student.get("want_int")}, "int_t", "predict_eps with a python-int t",
                               hint="An int t means the same timestep for the whole batch: a (B,) long tensor."),
                  expect_close(student, {"none": student.get("want_none")}, "none", "predict_eps with cond=None",
                               hint="Without a condition there is nothing to guide: return model(x_t, t, None)."))


def _probe_predict_eps_ref(ctx):
    g = ctx.generator()
    x, t = torch.randn(4, 3, 4, 4, generator=g), torch.randint(0, 100, (4,), generator=g)
    cond = {"label": torch.tensor([0, 1, 2, 4]), "view": torch.rand(4, 2, generator=g)}
    with torch.no_grad():
        return {"out": ctx.fn("predict_eps")(_FakeEps(), x, t, cond, 3.0)}


def _run_predict_eps_device(fn):
    def run(device, dtype):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, 4, 4, generator=g).to(device, dtype)
        cond = {"label": torch.tensor([1, 2], device=device), "view": torch.zeros(2, 2, device=device, dtype=dtype)}
        with torch.no_grad():
            return fn()(_FakeEps().to(device, dtype), x, 7, cond, 2.5)
    return run


# ----------------------------------------------------------------------------- sample
class _DeltaDenoiser(torch.nn.Module):
    """The exact eps-model of data that is a single image per batch row: sampling must return that image."""

    def __init__(self, target, alphas_cumprod):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))
        self.target, self.ab = target, torch.as_tensor(alphas_cumprod, dtype=torch.float32)
        self.seen = []

    def forward(self, x, t, cond):
        t = torch.as_tensor(t).reshape(-1).long()
        self.seen.append(t.tolist())
        a = self.ab.to(x.device)[t.to(x.device)][:, None, None, None]
        target = self.target.to(x.device).repeat(x.shape[0] // self.target.shape[0], 1, 1, 1)
        return (x - a.sqrt() * target) / (1 - a).sqrt()


def _probe_sample_delta(ctx):
    T = 40
    betas = _random_betas(ctx.generator(1), T)
    target = torch.rand(3, 3, 4, 4, generator=ctx.generator(2)) * 1.6 - 0.8
    sched, ab = _schedule(betas), _tables(betas)["alphas_cumprod"]
    fn = ctx.fn("sample")
    cond = {"label": torch.tensor([0, 1, 2]), "view": torch.zeros(3, 2)}
    out = {"target": target}
    runs = {"ddpm": dict(sampler="ddpm"), "ddim": dict(sampler="ddim", steps=7),
            "ddim_eta": dict(sampler="ddim", steps=9, eta=0.5), "ddpm_cfg": dict(sampler="ddpm", guidance_scale=3.0)}
    for name, kwargs in runs.items():
        model = _DeltaDenoiser(target, ab)
        out[name] = fn(model, (3, 3, 4, 4), sched, cond, generator=torch.Generator().manual_seed(ctx.seed), **kwargs)
        out[f"{name}_seen"] = [int(s[0]) for s in model.seen]
    out["T"], out["steps"] = T, 7
    return out


def _judge_sample_delta(student, reference, ctx):
    T = int(student["T"])
    ddpm_seen, ddim_seen = student.get("ddpm_seen") or [], student.get("ddim_seen") or []
    if ddpm_seen != list(range(T - 1, -1, -1)):
        return _fails("sample(sampler='ddpm')", f"the model must be called at t = {T - 1}, {T - 2}, ..., 0 (each "
                                                f"once); it saw {ddpm_seen[:4]} ... {ddpm_seen[-4:]} "
                                                f"({len(ddpm_seen)} calls). An off-by-one loop?")
    if len(ddim_seen) != 7 or not ddim_seen or ddim_seen[0] != T - 1 or ddim_seen[-1] != 0:
        return _fails("sample(sampler='ddim', steps=7)", f"the model must be called at the 7 grid timesteps from "
                                                         f"{T - 1} down to 0; it saw {ddim_seen}")
    hint = ("With the exact denoiser of a single image, every x0_hat is that image, so both samplers must end "
            "exactly on it. A missing or extra last step, or noise added at t = 0, breaks this.")
    return all_of(*[expect_close(student, {k: student.get("target")}, k,
                                 f"sample({k}) with the exact denoiser of a one-image dataset", rtol=1e-3, atol=1e-3,
                                 hint=hint) for k in ("ddpm", "ddim", "ddim_eta", "ddpm_cfg")])


def _sample_ref_run(ctx, **kwargs):
    T = 30
    sched = _schedule(_random_betas(ctx.generator(1), T))
    cond = {"label": torch.tensor([0, 1, 2, -1]), "view": torch.rand(4, 2, generator=ctx.generator(2))}
    return ctx.fn("sample")(_FakeEps(), (4, 3, 4, 4), sched, cond, generator=torch.Generator().manual_seed(ctx.seed),
                            **kwargs)


def _probe_sample_ref(ctx):
    return {"ddim": _sample_ref_run(ctx, sampler="ddim", steps=6, guidance_scale=2.5, eta=0.3),
            "ddim0": _sample_ref_run(ctx, sampler="ddim", steps=4, clip_denoised=False),
            "ddpm": _sample_ref_run(ctx, sampler="ddpm", guidance_scale=1.5)}


def _probe_sample_determinism(ctx):
    a = _sample_ref_run(ctx, sampler="ddim", steps=5)
    b = _sample_ref_run(ctx, sampler="ddim", steps=5)
    x_T = torch.randn(4, 3, 4, 4, generator=ctx.generator(3))
    c = _sample_ref_run(ctx, sampler="ddim", steps=5, x_T=x_T)
    d = _sample_ref_run(ctx, sampler="ddim", steps=5, x_T=x_T * 0.5)
    return {"a": a, "b": b, "dtype": str(a.dtype), "shape": list(a.shape), "c_vs_d": (c - d).abs().max()}


def _judge_sample_determinism(student, reference, ctx):
    if student.get("shape") != [4, 3, 4, 4] or student.get("dtype") != "torch.float32":
        return _fails("sample", f"expected a float32 (4, 3, 4, 4) tensor, got {student.get('dtype')} "
                                f"{student.get('shape')}")
    if not scalar(student, "c_vs_d", "change with x_T") > 1e-6:
        return _fails("sample", "a given x_T is ignored: start the chain from it")
    return expect_close(student, {"a": student.get("b")}, "a", "sample twice with the same generator seed",
                        rtol=0, atol=1e-6, hint="Draw every random number from `generator` (randn(shape, generator, "
                                                "like=...)), never from the global RNG.")


def _run_sample_device(fn):
    def run(device, dtype):
        sched = _schedule(_random_betas(torch.Generator().manual_seed(1), 20), device=device)
        cond = {"label": torch.tensor([0, 2], device=device), "view": torch.zeros(2, 2, device=device)}
        out = fn()(_FakeEps().to(device), (2, 3, 4, 4), sched, cond, steps=4, guidance_scale=2.0, eta=0.5,
                   generator=torch.Generator().manual_seed(2))
        return out
    return run


def _judge_sample_device(student, reference, ctx):
    if student.get("device", "").split(":")[0] != ctx.device.split(":")[0]:
        return _fails("sample", f"the samples are on {student.get('device')}, the model is on {ctx.device}: create "
                                "x_T on the model's device (randn(..., like=...)).")
    return expect_close(student, {"out": student.get("cpu")}, "out", f"sample on {ctx.device} vs on cpu",
                        rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- quality
QUALITY = dict(size=16, base_channels=16, channel_mults=(1, 2), attn_levels=(1,), T=200, steps=400, batch=32,
               lr=2e-3, samples_per_class=16, ddim_steps=15, guidance=2.0, eval_images=256,
               eval_t=(5, 30, 80, 140, 190))


def _cosine_betas(T: int) -> np.ndarray:
    """Nichol & Dhariwal's cosine betas (the closed form the make_beta_schedule checks use)."""
    f = np.cos((np.arange(T + 1) / T + 0.008) / 1.008 * np.pi / 2) ** 2
    return np.minimum(1 - f[1:] / f[:-1], 0.999)


def _held_out(size: int, count: int):
    """Trusted held-out renders at ``size`` in [-1, 1] (one view per test object), their labels, and a fixed
    random subset of ``count`` of them for the denoising error. Runs in the child and in the parent alike."""
    import torch.nn.functional as F

    from gen3d import data, features

    test = data.load_renders(32, "test")
    x = F.avg_pool2d(features.as_model_images(test["images"][:, 0]), 32 // size)   # (N, 3, size, size)
    subset = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:count]
    return x, test["labels"], x[subset]


def _eval_noise(shape, k: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(100 + k))


def _probe_quality(ctx):
    """Train the student's pipeline briefly; return raw outputs only (the judge computes every figure)."""
    import torch.nn.functional as F

    hw, ns, q = _hw(), ctx.ns, QUALITY
    torch.manual_seed(ctx.seed)
    cfg = hw.DiffusionConfig(image_size=q["size"], base_channels=q["base_channels"], channel_mults=q["channel_mults"],
                             attn_levels=q["attn_levels"], use_view=True, schedule="cosine", num_timesteps=q["T"],
                             steps=q["steps"], batch_size=q["batch"], lr=q["lr"], warmup=20, ema_decay=0.99,
                             seed=ctx.seed)
    train = hw.load_training_data(ns.normalize_images, 32, "train")                # the student's scaling
    train["x"] = F.avg_pool2d(train["x"], 32 // q["size"])                         # (M, 3, 16, 16)
    num_classes = int(train["label"].max()) + 1
    schedule = ns.schedule_from_betas(ns.make_beta_schedule("cosine", q["T"]))
    model = ns.UNet(**cfg.unet_kwargs(num_classes))
    result = hw.train_diffusion(model, ns.diffusion_loss, train, schedule, cfg, ctx.device, progress=False)
    ema = result["ema"]
    cond = hw.sample_conditions(train, num_classes, q["samples_per_class"], ctx.device,
                                torch.Generator().manual_seed(1))
    shape = (len(cond["label"]), 3, q["size"], q["size"])
    samples = ns.sample(ema, shape, schedule.to(ctx.device), cond, sampler="ddim", steps=q["ddim_steps"],
                        guidance_scale=q["guidance"], generator=torch.Generator().manual_seed(2))
    # denoising predictions on held-out renders noised with the trusted cosine forward process
    _, _, x0 = _held_out(q["size"], q["eval_images"])
    ab = torch.tensor(np.cumprod(1 - _cosine_betas(q["T"])), dtype=torch.float32)
    null = {"label": torch.full((len(x0),), NULL, device=ctx.device),
            "view": torch.zeros(len(x0), 2, device=ctx.device)}
    eps = []
    with torch.no_grad():
        for k, t in enumerate(q["eval_t"]):
            x_t = ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * _eval_noise(x0.shape, k)
            t_batch = torch.full((len(x0),), t, dtype=torch.long, device=ctx.device)
            eps.append(torch.as_tensor(ema(x_t.to(ctx.device), t_batch, null)).float().cpu())
    return {"samples": torch.as_tensor(samples).float().cpu(), "eps": torch.stack(eps), "seconds": result["seconds"]}


def _quality_figures(outputs) -> dict:
    """Held-out denoising error, sample Frechet distance and category accuracy, computed here in the parent."""
    hw, q = _hw(), QUALITY
    test_x, test_label, x0 = _held_out(q["size"], q["eval_images"])
    eps = _t(as_array(outputs.get("eps"), "denoising predictions")).float()
    noise = torch.stack([_eval_noise(x0.shape, k) for k in range(len(q["eval_t"]))])
    if eps.shape != noise.shape:
        raise ValueError(f"denoising predictions have shape {tuple(eps.shape)}, expected {tuple(noise.shape)}")
    samples = _t(as_array(outputs.get("samples"), "samples")).float()
    labels = torch.arange(int(test_label.max()) + 1).repeat_interleave(q["samples_per_class"])
    if samples.shape != (len(labels), 3, q["size"], q["size"]) or not torch.isfinite(samples).all():
        raise ValueError(f"samples: expected {len(labels)} finite images of 3x{q['size']}x{q['size']}, got "
                         f"{tuple(samples.shape)}")
    scores = hw.evaluate_samples(samples, labels, {"x": test_x, "label": test_label})
    return {"eval_loss": float(((eps - noise) ** 2).mean()), **scores}


def _judge_quality(student, reference, ctx):
    mine, ref = _quality_figures(student), _quality_figures(reference)
    report = (f"after {QUALITY['steps']} training steps: held-out denoising error {mine['eval_loss']:.4f} (reference "
              f"{ref['eval_loss']:.4f}), sample Frechet distance {mine['fid']:.1f} (reference {ref['fid']:.1f}), "
              f"category accuracy {mine['accuracy']:.2f} (reference {ref['accuracy']:.2f})")
    if not mine["eval_loss"] <= ref["eval_loss"] * 1.1 + 0.005:
        return _fails("UNet + diffusion_loss", f"the trained network denoises held-out renders worse than the "
                      f"reference: {report}. Check the data range, the loss target (the noise), q_sample and "
                      "the U-Net.")
    if not mine["fid"] <= ref["fid"] * 1.3 + 5.0:
        return _fails("sample", f"the samples are further from the data than the reference's: {report}. "
                                "Check the sampler and the guidance.")
    if not mine["accuracy"] >= ref["accuracy"] - 0.2:
        return _fails("sample", f"the samples show the requested category less often than the reference's: "
                                f"{report}. Check the label conditioning, the null token and the guidance direction.")
    return Verdict(True, f"quality on a par with the reference: {report}")


def _figure_quality(student, reference, ctx) -> list:
    """The student's samples beside the reference's (same budget, same noise) for the HTML report."""
    from gen3d import viz

    figures = []
    for who, data in (("your", student), ("the reference's", reference)):
        if data is not None:
            images = _t(as_array(data.get("samples"), "samples")).float()  # (5 x 16, 3, 16, 16)
            figures.append((f"{who} samples after {QUALITY['steps']} training steps (one row per category)",
                            viz.image_grid(images, nrow=16, value_range=(-1.0, 1.0), scale=2.0)))
    return figures


# ----------------------------------------------------------------------------- the topic
def _fn(ctx_holder, name):
    return lambda: ctx_holder["ctx"].fn(name)


def _device(function, run_factory, hint=""):
    """A device check whose runner gets the student's function through the probe's context."""
    holder = {}
    check = _device_check(function, run_factory(_fn(holder, function)), hint)
    inner = check.probe

    def probe(ctx):
        holder["ctx"] = ctx
        return inner(ctx)
    judge = _judge_sample_device if function == "sample" else check.judge
    return Check(check.name, function, "device", probe, judge, needs_reference=False)


def _run_q_device(fn):
    def run(device, dtype):
        g = torch.Generator().manual_seed(0)
        sched = _schedule(_random_betas(g, 30), device=device)
        x0, noise = (torch.randn(3, 3, 4, 4, generator=g).to(device, dtype) for _ in range(2))
        t = torch.tensor([0, 11, 29], device=device)
        return fn()(x0, t, noise, sched)
    return run


def _run_x0_device(fn):
    def run(device, dtype):
        g = torch.Generator().manual_seed(0)
        sched = _schedule(_random_betas(g, 30), device=device)
        x, eps = (torch.randn(3, 3, 4, 4, generator=g).to(device, dtype) for _ in range(2))
        return fn()(x, torch.tensor([0, 11, 29], device=device), eps, sched)
    return run


def _run_embedding_device(fn):
    return lambda device, dtype: fn()(torch.tensor([0.0, 3.5, 999.0], device=device, dtype=dtype), 10)


def _run_block_device(name, make):
    def factory(fn):
        def run(device, dtype):
            torch.manual_seed(0)
            module, inputs = make(fn())
            module = module.to(device=device, dtype=dtype)
            with torch.no_grad():
                return module(*[x.to(device, dtype) for x in inputs])
        return run
    return factory


def _run_cfg_device(fn):
    def run(device, dtype):
        g = torch.Generator().manual_seed(0)
        u, c = (torch.randn(2, 3, 4, 4, generator=g).to(device, dtype) for _ in range(2))
        return fn()(u, c, 4.0)
    return run


_PUB = dict(needs_reference=False)

CHECKS = [
    Check("normalize_images.values", "normalize_images", "value", _probe_normalize, _judge_normalize, **_PUB),
    _ref_check("normalize_images.reference", "normalize_images", _probe_normalize, ["out"], "v / 127.5 - 1"),
    Check("normalize_images.device", "normalize_images", "device", _probe_normalize_device, _judge_normalize_device,
          **_PUB),

    Check("make_beta_schedule.oracle", "make_beta_schedule", "value", _probe_betas_oracle, _judge_betas_oracle, **_PUB),
    Check("make_beta_schedule.closed_form", "make_beta_schedule", "value", _probe_betas_closed_form,
          _judge_betas_closed_form, **_PUB),
    _ref_check("make_beta_schedule.reference", "make_beta_schedule", _probe_betas_ref, ["linear", "cosine"], "",
               rtol=1e-6, atol=1e-9),

    Check("schedule_from_betas.oracle", "schedule_from_betas", "value", _probe_schedule, _judge_schedule_oracle,
          **_PUB),
    Check("schedule_from_betas.identities", "schedule_from_betas", "value", _probe_schedule, _judge_schedule_identities,
          **_PUB),
    _ref_check("schedule_from_betas.reference", "schedule_from_betas", _probe_schedule, [f"s_{k}" for k in _FIELDS], "",
               rtol=1e-6, atol=1e-9),
    _device("schedule_from_betas", _run_schedule_device),

    Check("q_sample.oracle", "q_sample", "value", _probe_q_sample, _judge_q_sample_oracle, **_PUB),
    Check("q_sample.statistics", "q_sample", "value", _probe_q_statistics, _judge_q_statistics, **_PUB),
    Check("q_sample.gradcheck", "q_sample", "gradient", _probe_q_gradient, _judge_gradcheck("q_sample"), **_PUB),
    _ref_check("q_sample.reference", "q_sample", _probe_q_sample, ["out"], ""),
    _device("q_sample", _run_q_device),

    Check("timestep_embedding.oracle", "timestep_embedding", "value", _probe_embedding, _judge_embedding_oracle,
          **_PUB),
    Check("timestep_embedding.shape", "timestep_embedding", "shape", _probe_embedding_shape, _judge_embedding_shape,
          **_PUB),
    _ref_check("timestep_embedding.reference", "timestep_embedding", _probe_embedding, ["even", "odd", "float"], "",
               atol=5e-4),
    _device("timestep_embedding", _run_embedding_device),

    Check("ResBlock.shape", "ResBlock", "shape", _probe_resblock_shape, _judge_resblock_shape, **_PUB),
    Check("ResBlock.depends_on_emb", "ResBlock", "value", _probe_resblock_depends,
          _judge_depends("ResBlock", {"d_emb": "the embedding", "d_x": "the input"}), **_PUB),
    Check("ResBlock.gradients", "ResBlock", "gradient", _probe_resblock_grads, _judge_grads("ResBlock"), **_PUB),
    _ref_check("ResBlock.reference", "ResBlock", _probe_resblock_ref,
               [f"{n}_{k}" for n in ("change", "same") for k in ("params", "out", "dx", "demb")],
               "Create the layers in the documented order (same random init) and follow the documented forward.",
               rtol=1e-4, atol=1e-5),
    _device("ResBlock", _run_block_device("ResBlock", lambda cls: (cls(16, 24, 8), (torch.randn(2, 16, 4, 4),
                                                                                   torch.randn(2, 8))))),

    Check("AttentionBlock.shape", "AttentionBlock", "shape", _probe_attention_shape, _judge_attention_shape, **_PUB),
    Check("AttentionBlock.mixing", "AttentionBlock", "value", _probe_attention_mixing, _judge_attention_mixing, **_PUB),
    Check("AttentionBlock.gradients", "AttentionBlock", "gradient", _probe_attention_grads,
          _judge_grads("AttentionBlock"), **_PUB),
    _ref_check("AttentionBlock.reference", "AttentionBlock", _probe_attention_ref,
               ["h1_out", "h1_dx", "h4_out", "h4_dx"],
               "softmax(q^T k / sqrt(d)) over the keys, per head; out = x + proj(attention output).",
               rtol=1e-4, atol=1e-5),
    _device("AttentionBlock", _run_block_device("AttentionBlock",
                                                lambda cls: (cls(16, 2), (torch.randn(2, 16, 4, 4),)))),

    Check("UNet.shape", "UNet", "shape", _probe_unet_shape, _judge_unet_shape, **_PUB),
    Check("UNet.conditioning", "UNet", "value", _probe_unet_depends, _judge_unet_depends, **_PUB),
    Check("UNet.gradients", "UNet", "gradient", _probe_unet_grads, _judge_grads("UNet"), **_PUB),
    _ref_check("UNet.reference", "UNet", _probe_unet_ref, ["params", "out"],
               "embed: time MLP + label row (null -> row num_classes) + view MLP; forward: encoder pushing every "
               "activation, middle, decoder popping them.", rtol=1e-4, atol=1e-5),
    _device("UNet", _run_unet_device),
    Check("UNet.quality", "UNet", "quality", _probe_quality, _judge_quality, points=3.0, timeout=480.0,
          fixed_seed=QUALITY_SEED, figure=_figure_quality),

    Check("diffusion_loss.perfect_model", "diffusion_loss", "value", _probe_loss_perfect, _judge_loss_perfect, **_PUB),
    Check("diffusion_loss.draws", "diffusion_loss", "value", _probe_loss_draws, _judge_loss_draws, **_PUB),
    Check("diffusion_loss.gradients", "diffusion_loss", "gradient", _probe_loss_grads, _judge_grads("diffusion_loss"),
          **_PUB),
    _ref_check("diffusion_loss.reference", "diffusion_loss", _probe_loss_ref, ["loss", "grad"],
               "Draw t, then the noise, then the dropout mask, with the given generator and helpers.", rtol=1e-4),
    _device("diffusion_loss", _run_loss_device),

    Check("predict_x0.inverts_q_sample", "predict_x0", "value", _probe_x0, _judge_x0_inverts, **_PUB),
    Check("predict_x0.gradcheck", "predict_x0", "gradient", _probe_x0_gradient, _judge_gradcheck("predict_x0"), **_PUB),
    _ref_check("predict_x0.reference", "predict_x0", _probe_x0, ["out", "out_int"], "", rtol=1e-4, atol=1e-4),
    _device("predict_x0", _run_x0_device),

    Check("p_sample_step.oracle", "p_sample_step", "value", _probe_p_step_oracle, _judge_p_step_oracle, **_PUB),
    Check("p_sample_step.last_step", "p_sample_step", "value", _probe_p_step_last, _judge_p_step_last, **_PUB),
    _ref_check("p_sample_step.reference", "p_sample_step", _probe_p_step_ref, ["clip", "free", "t1"], ""),
    _device("p_sample_step", _run_p_step_device),

    Check("ddim_step.oracle", "ddim_step", "value", _probe_ddim_oracle, _judge_ddim_oracle, **_PUB),
    Check("ddim_step.deterministic_inverts", "ddim_step", "value", _probe_ddim_inverts, _judge_ddim_inverts, **_PUB),
    Check("ddim_step.eta_one_is_ddpm", "ddim_step", "value", _probe_ddim_eta_one, _judge_ddim_eta_one, **_PUB),
    _ref_check("ddim_step.reference", "ddim_step", _probe_ddim_ref, ["eta0", "eta07", "final"], ""),
    _device("ddim_step", _run_ddim_device),

    Check("ddim_timesteps.grid", "ddim_timesteps", "value", _probe_grid, _judge_grid, **_PUB),
    Check("ddim_timesteps.reference", "ddim_timesteps", "value", _probe_grid, _judge_grid_ref),

    Check("classifier_free_guidance.values", "classifier_free_guidance", "value", _probe_cfg, _judge_cfg, **_PUB),
    Check("classifier_free_guidance.gradcheck", "classifier_free_guidance", "gradient", _probe_cfg_gradient,
          _judge_gradcheck("classifier_free_guidance"), **_PUB),
    _ref_check("classifier_free_guidance.reference", "classifier_free_guidance", _probe_cfg, ["s0", "s1", "ss"], ""),
    _device("classifier_free_guidance", _run_cfg_device),

    Check("predict_eps.guidance", "predict_eps", "value", _probe_predict_eps, _judge_predict_eps, **_PUB),
    _ref_check("predict_eps.reference", "predict_eps", _probe_predict_eps_ref, ["out"], ""),
    _device("predict_eps", _run_predict_eps_device),

    Check("sample.exact_denoiser", "sample", "value", _probe_sample_delta, _judge_sample_delta, **_PUB),
    Check("sample.determinism", "sample", "value", _probe_sample_determinism, _judge_sample_determinism, **_PUB),
    _ref_check("sample.reference", "sample", _probe_sample_ref, ["ddim", "ddim0", "ddpm"],
               "Draw x_T, then one noise tensor per step (always), from `generator`; DDPM walks T-1..0, DDIM its grid "
               "then jumps to -1.", rtol=1e-4, atol=1e-4),
    _device("sample", _run_sample_device),
]

TOPIC = Topic(name="04_diffusion", notebook="solutions/04_diffusion/diffusion.ipynb", functions=FUNCTIONS,
              checks=CHECKS)
