"""Checks of topic 05 (score distillation sampling): timesteps, weights, the SDS loss, view conditions,
random cameras, the voxel radiance grid, and SDS itself.

Public checks (``needs_reference=False``) use hand cases and invariants: the SDS gradient is recomputed in
the parent from what a *recording fake eps-model* saw (x_t, t, label, view), so any draw order passes as
long as the gradient is w(t) (eps_hat - eps) / B with the eps that made x_t; a fake model whose backward
raises proves that nothing is differentiated through the U-Net. Hidden checks compare with the reference
on fresh random inputs (a small random U-Net of 04 for ``sds_loss``), and the quality check runs SDS with
the kit's priors (``gen3d.hw_sds``) and the student's loss; the parent scores the renders with the kit's
image classifier (category score, Janus score) against the reference's run on the same budget.

Earlier topics' pieces (02's renderer and cameras, 04's U-Net and schedules) come from ``Topic.depends``:
the reference versions, so a bug in 02/04 is not charged again here.
"""
from __future__ import annotations

import math

import numpy as np

from autograder.spec import (Topic, Verdict, all_of, as_array, describe, expect_close, make_check,
                             tensor_device_probe)

try:  # torch.optim's first step imports torch._dynamo lazily; import it while the stdlib is readable
    import torch._dynamo  # noqa: F401
except Exception:  # noqa: BLE001
    pass

FUNCTIONS = ["sds_timestep", "sds_weight", "sds_loss", "view_condition", "random_sds_cameras", "query_voxels"]
DEPENDS = {"02_pigan": ["get_rays", "stratified_depths", "volume_render", "look_at_origin"],
           "04_diffusion": ["UNet", "diffusion_loss", "make_beta_schedule", "schedule_from_betas",
                            "normalize_images"]}
NULL_LABEL = -1
T_RANGE = (0.02, 0.98)
FRONT, BACK, OVERHEAD = math.radians(45.0), math.radians(135.0), math.radians(60.0)
KS_CRITICAL = 2.47  # sqrt(-ln(alpha / 2) / 2) at alpha = 1e-5


# ----------------------------------------------------------------------------- helpers (child side)
def _torch():
    import torch

    return torch


def _alphas_cumprod(num_timesteps):
    """The cosine schedule's alpha_bar (Nichol & Dhariwal, offset 0.008, betas clipped at 0.999), float64."""
    times = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    alpha_bar = np.cos((times + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], 0.999)
    return np.cumprod(1 - betas)


def _schedule(num_timesteps, device=None):
    """A DiffusionSchedule with the cosine tables SDS needs (posterior tables zero: SDS never reads them)."""
    torch = _torch()
    from gen3d.hw_diffusion import DiffusionSchedule

    ac = torch.tensor(_alphas_cumprod(num_timesteps), dtype=torch.float64, device=device)
    prev = torch.cat([ac.new_ones(1), ac[:-1]])
    zeros = torch.zeros_like(ac)
    return DiffusionSchedule(betas=1 - ac / prev, alphas=ac / prev, alphas_cumprod=ac, alphas_cumprod_prev=prev,
                             posterior_variance=zeros, posterior_log_variance_clipped=zeros,
                             posterior_mean_coef1=zeros, posterior_mean_coef2=zeros)


def _label_shift(label):
    """The fake model's per-label offset (3,), label in [-1, 4] (numpy and torch alike)."""
    k = label + 1.0
    return np.stack([0.2 * k, -0.15 * k, 0.1 * k * k], axis=-1) if isinstance(k, np.ndarray) else None


def _fake_eps_np(x, t, label, num_timesteps):
    """eps(x, t, label) = 0.5 x + 0.3 t / T + shift(label) per channel: x (N, 3, H, W), t (N,), label (N,)."""
    shift = _label_shift(label.astype(np.float64))                                         # (N, 3)
    return 0.5 * x + 0.3 * (t / num_timesteps)[:, None, None, None] + shift[:, :, None, None]


class _Recorder:
    """A fake eps-model that records every call (x, t, label, view) and returns ``_fake_eps``."""

    def __init__(self, num_timesteps):
        self.num_timesteps = num_timesteps
        self.rows = {"x": [], "t": [], "label": [], "view": [], "grad_mode": []}

    def __call__(self, x, t, cond=None):
        torch = _torch()
        n = x.shape[0]
        cond = cond or {}
        label = cond.get("label")
        label = torch.full((n,), -2, dtype=torch.long) if label is None else label.detach().long().cpu()
        view = cond.get("view")
        view = torch.full((n, 2), float("nan"), dtype=torch.float64) if view is None else view.detach().double().cpu()
        t_cpu = torch.as_tensor(t).detach().cpu().reshape(-1).expand(n).double()
        self.rows["x"].append(x.detach().double().cpu())
        self.rows["t"].append(t_cpu)
        self.rows["label"].append(label)
        self.rows["view"].append(view)
        self.rows["grad_mode"].append(bool(torch.is_grad_enabled() and x.requires_grad))
        shift = torch.as_tensor(_label_shift(label.clamp(min=-1).double().numpy()), dtype=x.dtype, device=x.device)
        return 0.5 * x + 0.3 * (t_cpu.to(x) / self.num_timesteps)[:, None, None, None] + shift[:, :, None, None]

    def record(self):
        torch = _torch()
        if not self.rows["x"]:
            return {"calls": 0}
        return {"calls": len(self.rows["x"]), "rows_x": torch.cat(self.rows["x"]), "rows_t": torch.cat(self.rows["t"]),
                "rows_label": torch.cat(self.rows["label"]), "rows_view": torch.cat(self.rows["view"]),
                "grad_mode": any(self.rows["grad_mode"])}


def _judge_device(function, dtypes):
    def judge(student, reference, ctx):
        if set(student["devices"]) != {student["want_device"]}:
            return Verdict(False, f"{function}: inputs on {student['want_device']} gave outputs on {student['devices']}; "
                                  "create tensors with device=/dtype= of the inputs (or *_like), never .cpu()/.cuda()")
        if list(student["dtypes"]) != list(dtypes):
            return Verdict(False, f"{function}: expected output dtypes {list(dtypes)}, got {student['dtypes']}")
        if not student["finite"]:
            return Verdict(False, f"{function}: outputs on {student['want_device']} contain NaN/inf")
        return Verdict(True, f"{function} keeps device {student['want_device']} and dtype(s) {list(dtypes)}")
    return judge


def _reference_close(function, keys, rtol=1e-5, atol=1e-6, hint=""):
    def judge(student, reference, ctx):
        return all_of(*[expect_close(student, reference, k, f"{function}: {label}", rtol, atol, hint)
                        for k, label in keys.items()])
    return judge


def _ks_uniform(values):
    x = np.sort(np.clip(values, 0, 1))
    n = len(x)
    return float(max((np.arange(1, n + 1) / n - x).max(), (x - np.arange(n) / n).max()))


def _look_at(azimuth, elevation, radius):
    """Camera-to-world (B, 4, 4) on a sphere, looking at the origin, +y up (the kit's convention)."""
    torch = _torch()
    centre = radius * torch.stack([elevation.cos() * azimuth.sin(), elevation.sin(),
                                   elevation.cos() * azimuth.cos()], dim=-1)               # (B, 3)
    z = centre / centre.norm(dim=-1, keepdim=True)
    up = torch.zeros_like(z)
    up[:, 1] = 1
    x = torch.linalg.cross(up, z)
    x = x / x.norm(dim=-1, keepdim=True)
    y = torch.linalg.cross(z, x)
    c2w = torch.zeros(azimuth.shape[0], 4, 4, dtype=azimuth.dtype, device=azimuth.device)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = x, y, z, centre
    c2w[:, 3, 3] = 1
    return c2w


# ----------------------------------------------------------------------------- sds_timestep
def _t_bounds(num_timesteps, t_range=T_RANGE):
    return int(math.floor(t_range[0] * num_timesteps)), min(int(math.floor(t_range[1] * num_timesteps)),
                                                            num_timesteps - 1)


def probe_timestep_range(ctx):
    torch = _torch()
    fn = ctx.fn("sds_timestep")
    out = {}
    for key, (batch, big_t, t_range) in {"t1000": (20000, 1000, T_RANGE), "t50": (4000, 50, T_RANGE),
                                         "t10": (2000, 10, (0.5, 1.0))}.items():
        t = fn(batch, big_t, t_range, ctx.generator(len(out)))
        if not torch.is_tensor(t) or tuple(t.shape) != (batch,):
            return {"problem": f"sds_timestep({batch}, {big_t}, {t_range}) should return a ({batch},) tensor, got "
                               f"{getattr(t, 'shape', type(t).__name__)}"}
        out[key] = t
        out[key + "_dtype"] = str(t.dtype)
    return out


def judge_timestep_range(student, reference, ctx):
    for key, (big_t, t_range) in {"t1000": (1000, T_RANGE), "t50": (50, T_RANGE), "t10": (10, (0.5, 1.0))}.items():
        if student[key + "_dtype"] != "torch.int64":
            return Verdict(False, f"sds_timestep must return long (int64) timesteps, got {student[key + '_dtype']}")
        t = as_array(student[key], "timesteps")
        lo, hi = _t_bounds(big_t, t_range)
        if t.min() < lo or t.max() > hi:
            hint = (" Likely: t drawn over the whole range 0 .. T - 1; DreamFusion keeps t in [0.02 T, 0.98 T]."
                    if t.min() < lo and t_range == T_RANGE else "")
            return Verdict(False, f"sds_timestep(T={big_t}, t_range={t_range}): timesteps must lie in [{lo}, {hi}], "
                                  f"got [{t.min()}, {t.max()}].{hint}")
        if t.min() != lo or t.max() != hi:
            return Verdict(False, f"sds_timestep(T={big_t}, t_range={t_range}): over {t.size} draws both ends {lo} and "
                                  f"{hi} should occur, got [{t.min()}, {t.max()}] (the upper end is inclusive: "
                                  "torch.randint(t_min, t_max + 1, ...))")
        counts = np.bincount(t - lo, minlength=hi - lo + 1)
        expected = t.size / (hi - lo + 1)
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        dof = hi - lo
        if chi2 > dof + 6 * math.sqrt(2 * dof) + 10:
            return Verdict(False, f"sds_timestep(T={big_t}): the timesteps are not uniform over [{lo}, {hi}] "
                                  f"(chi^2 {chi2:.0f} for {dof} degrees of freedom)")
    return Verdict(True, "sds_timestep: long timesteps, uniform over [floor(0.02 T), floor(0.98 T)]")


def probe_timestep_generator(ctx):
    torch = _torch()
    fn = ctx.fn("sds_timestep")
    a, b, c = fn(64, 1000, T_RANGE, ctx.generator(1)), fn(64, 1000, T_RANGE, ctx.generator(1)), \
        fn(64, 1000, T_RANGE, ctx.generator(2))
    return {"same": bool(torch.equal(a, b)), "differ": not bool(torch.equal(a, c))}


def judge_timestep_generator(student, reference, ctx):
    if not student["same"]:
        return Verdict(False, "sds_timestep: the same generator seed gave different timesteps; draw with generator=")
    if not student["differ"]:
        return Verdict(False, "sds_timestep: different generator seeds gave the same timesteps")
    return Verdict(True, "sds_timestep: reproducible from its generator")


def probe_timestep_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    big_t = int(torch.randint(20, 2000, (1,), generator=g))
    low = float(0.3 * torch.rand(1, generator=g))
    return {"t": ctx.fn("sds_timestep")(37, big_t, (low, low + 0.5), ctx.generator(1))}


def _timestep_device(ctx, torch):
    return ctx.fn("sds_timestep")(5, 100, T_RANGE, ctx.generator(), ctx.device)


# ----------------------------------------------------------------------------- sds_weight
def probe_weight_value(ctx):
    torch = _torch()
    import types

    g = ctx.generator()
    ac = torch.sort(torch.rand(40, generator=g, dtype=torch.float64), descending=True).values
    schedule = types.SimpleNamespace(alphas_cumprod=ac, num_timesteps=40)
    t = torch.randint(0, 40, (25,), generator=g)
    fn = ctx.fn("sds_weight")
    sds, uniform = fn(t, schedule, "sds"), fn(t, schedule, "uniform")
    for value, label in ((sds, "sds"), (uniform, "uniform")):
        if not torch.is_tensor(value) or tuple(value.shape) != (25,):
            return {"problem": f"sds_weight(t (25,), kind={label!r}) should return a (25,) tensor, got "
                               f"{getattr(value, 'shape', type(value).__name__)}"}
    return {"sds": sds, "uniform": uniform, "ac": ac, "t": t}


def judge_weight_value(student, reference, ctx):
    ac, t = as_array(student["ac"], "alphas_cumprod"), as_array(student["t"], "t")
    want = 1 - ac[t]
    got = as_array(student["sds"], "w")
    if not np.allclose(got, want, rtol=1e-6, atol=1e-9):
        hints = []
        if np.allclose(got, ac[t], atol=1e-9):
            hints.append("you return alpha_bar_t; the weight is sigma_t^2 = 1 - alpha_bar_t")
        if np.allclose(got, np.sqrt(want), atol=1e-9):
            hints.append("you return sigma_t = sqrt(1 - alpha_bar_t); DreamFusion's weight is sigma_t^2")
        if np.allclose(got, 1 - ac[np.maximum(t - 1, 0)], atol=1e-9) or np.allclose(got, 1 - ac[np.minimum(t + 1, 39)],
                                                                                     atol=1e-9):
            hints.append("off-by-one index: timesteps are 0-based, index alphas_cumprod with t itself")
        hint = " Likely: " + "; ".join(hints) + "." if hints else ""
        return Verdict(False, f"sds_weight(kind='sds'): expected 1 - alphas_cumprod[t], e.g. {want[:3].round(6).tolist()}, "
                              f"got {got[:3].round(6).tolist()}.{hint}")
    if not np.allclose(as_array(student["uniform"], "w"), 1.0):
        return Verdict(False, f"sds_weight(kind='uniform') must be all ones, got {describe(student['uniform'])}")
    return Verdict(True, "sds_weight: 1 - alpha_bar_t for 'sds', 1 for 'uniform'")


def probe_weight_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    schedule = _schedule(int(torch.randint(50, 1000, (1,), generator=g)))
    t = torch.randint(0, schedule.num_timesteps, (30,), generator=g)
    return {"w": ctx.fn("sds_weight")(t, schedule, "sds")}


def _weight_device(ctx, torch):
    schedule = _schedule(100, ctx.device)
    return ctx.fn("sds_weight")(torch.tensor([3, 50, 97], device=ctx.device), schedule, "sds")


# ----------------------------------------------------------------------------- sds_loss
GRAD_B, GRAD_HW, GRAD_T, GRAD_SCALE = 4, 5, 100, 7.5


def _loss_inputs(ctx, dtype=None, device=None):
    torch = _torch()
    g = ctx.generator()
    dtype = dtype or torch.float64
    images = (2 * torch.rand(GRAD_B, 3, GRAD_HW, GRAD_HW, generator=g, dtype=torch.float64) - 1).to(dtype)
    cond = {"label": torch.tensor([0, 3, 1, 4]),
            "view": torch.stack([0.4 * torch.arange(1, GRAD_B + 1, dtype=torch.float64), 0.1 * torch.ones(GRAD_B,
                                 dtype=torch.float64)], dim=1).to(dtype)}
    if device is not None:
        images, cond = images.to(device), {k: v.to(device) for k, v in cond.items()}
    return images.requires_grad_(True), cond


def probe_loss_gradient(ctx):
    torch = _torch()
    images, cond = _loss_inputs(ctx)
    model = _Recorder(GRAD_T)
    loss = ctx.fn("sds_loss")(images, model, _schedule(GRAD_T), cond, GRAD_SCALE, T_RANGE, ctx.generator(1))
    if not torch.is_tensor(loss) or loss.numel() != 1:
        return {"problem": f"sds_loss should return a scalar tensor, got {getattr(loss, 'shape', type(loss).__name__)}"}
    if not loss.requires_grad:
        return {"problem": "sds_loss: the loss does not depend on the images (no graph to them): the gradient must "
                           "reach the renders; only the target is detached"}
    loss.reshape(()).backward()
    if images.grad is None:
        return {"problem": "sds_loss: backward() left images.grad empty"}
    return {"images": images.detach(), "grad": images.grad, "loss": loss.detach().reshape(()),
            "labels": cond["label"], "views": cond["view"], **model.record()}


def _match_rows(student):
    """Per sample b: (cond row, uncond row) indices among the recorded calls, or a problem message."""
    labels, views = as_array(student["labels"], "labels"), as_array(student["views"], "views")
    rows_label, rows_view = as_array(student["rows_label"], "labels"), as_array(student["rows_view"], "views")
    if np.isnan(rows_view).any():
        return None, ("sds_loss: eps_model was called without cond['view'] (in one of the branches); both branches get "
                      "the view, only the label is replaced by NULL_LABEL in the unconditional one")
    if (rows_label == -2).any():
        return None, "sds_loss: eps_model was called without a label; the unconditional branch uses NULL_LABEL (-1)"
    pairs = []
    for b in range(len(labels)):
        same_view = np.abs(rows_view - views[b]).max(axis=1) < 1e-9
        cond_rows = np.nonzero(same_view & (rows_label == labels[b]))[0]
        null_rows = np.nonzero(same_view & (rows_label == NULL_LABEL))[0]
        if len(cond_rows) != 1 or len(null_rows) != 1:
            return None, (f"sds_loss with guidance_scale={GRAD_SCALE}: sample {b} should be seen once with its label "
                          f"and once with NULL_LABEL (same view); eps_model saw it {len(cond_rows)} and {len(null_rows)} "
                          f"times. Classifier-free guidance needs both branches: one call on [x_t; x_t] with the labels "
                          f"then the null labels")
        pairs.append((int(cond_rows[0]), int(null_rows[0])))
    return pairs, None


def _sds_expectation(student):
    """(want_grad, eps, eps_hat_cond, eps_hat_uncond, w, t) recomputed in the parent, or a problem message."""
    pairs, problem = _match_rows(student)
    if problem:
        return None, problem
    x = as_array(student["images"], "images").astype(np.float64)
    rows_x, rows_t = as_array(student["rows_x"], "x_t"), as_array(student["rows_t"], "t")
    rows_label = as_array(student["rows_label"], "labels")
    ci, ui = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    x_t, t = rows_x[ci], rows_t[ci]
    if not np.allclose(rows_x[ui], x_t, atol=1e-9) or not np.array_equal(rows_t[ui], t):
        return None, "sds_loss: the two guidance branches must see the same x_t and t"
    t_int = t.astype(np.int64)
    ac = _alphas_cumprod(GRAD_T)[t_int][:, None, None, None]
    eps = (x_t - np.sqrt(ac) * x) / np.sqrt(1 - ac)                     # the noise that made x_t
    e_cond = _fake_eps_np(x_t, t, rows_label[ci], GRAD_T)
    e_null = _fake_eps_np(x_t, t, rows_label[ui], GRAD_T)
    w = 1 - ac
    eps_hat = e_null + GRAD_SCALE * (e_cond - e_null)
    return {"want": w * (eps_hat - eps) / len(x), "eps": eps, "e_cond": e_cond, "e_null": e_null, "w": w,
            "t": t_int}, None


def judge_loss_gradient(student, reference, ctx):
    if int(student.get("calls", 0)) == 0:
        return Verdict(False, "sds_loss never called eps_model")
    exp, problem = _sds_expectation(student)
    if problem:
        return Verdict(False, problem)
    got = as_array(student["grad"], "images.grad").astype(np.float64)
    want, b = exp["want"], got.shape[0]
    lo, hi = _t_bounds(GRAD_T)
    if exp["t"].min() < lo or exp["t"].max() > hi:
        return Verdict(False, f"sds_loss: timesteps {exp['t'].tolist()} outside DreamFusion's [{lo}, {hi}] (T = {GRAD_T})")
    if np.allclose(got, want, rtol=1e-6, atol=1e-9):
        loss, want_loss = float(student["loss"]), 0.5 * float(((want * b) ** 2).sum()) / b
        if not math.isclose(loss, want_loss, rel_tol=1e-6, abs_tol=1e-9):
            return Verdict(False, f"sds_loss: the gradient is right but the loss value is {loss:.6g}, expected "
                                  f"0.5 * sum((images - target)^2) / B = {want_loss:.6g}")
        return Verdict(True, "sds_loss: d loss / d images = w(t) (eps_hat - eps) / B with eps_hat = eps_uncond + "
                             "s (eps_cond - eps_uncond) and the eps that made x_t")
    hints = []
    eps, w, e_cond, e_null = exp["eps"], exp["w"], exp["e_cond"], exp["e_null"]
    candidates = {
        "the sign is flipped: target = (x - grad).detach(), so that descending the loss moves x by -grad":
            -want,
        "the weight w(t) = 1 - alpha_bar_t is missing": (e_null + GRAD_SCALE * (e_cond - e_null) - eps) / b,
        "guidance on the wrong branch: eps_uncond + s (eps_cond - eps_uncond), not eps_cond + s (eps_uncond - eps_cond)":
            w * (e_cond + GRAD_SCALE * (e_null - e_cond) - eps) / b,
        "no mean over the batch: the documented reduction is sum / B": want * b,
        "no guidance: eps_hat must be eps_uncond + s (eps_cond - eps_uncond)": w * (e_cond - eps) / b,
    }
    for hint, value in candidates.items():
        if np.allclose(got, value, rtol=1e-5, atol=1e-8):
            hints.append(hint)
    if not hints:
        implied = e_null + GRAD_SCALE * (e_cond - e_null) - got * b / w    # the eps the student subtracted
        if np.isfinite(implied).all() and abs(np.std(implied) - 1) < 0.5 and not np.allclose(implied, eps, atol=1e-4):
            hints.append("the eps in the residual is not the eps that made x_t: draw the noise once and use it for "
                         "both (noise re-drawn between the forward and the residual?)")
        elif student.get("grad_mode"):
            hints.append("eps_model ran with gradients enabled: the gradient flows through the U-Net; run it under "
                         "torch.no_grad() and use the detached-target trick")
    err = np.abs(got - want).max()
    hint = " Likely: " + "; ".join(hints) + "." if hints else ""
    return Verdict(False, f"sds_loss: d loss / d images should be w(t) (eps_hat - eps) / B (recomputed from what "
                          f"eps_model saw); max |error| {err:.3g} (got {got.flat[0]:.5g}, expected {want.flat[0]:.5g} "
                          f"at index 0).{hint}")


class _Raise:
    """An autograd function that is the identity forward and raises in backward."""

    @staticmethod
    def make():
        torch = _torch()

        class RaiseInBackward(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.clone()

            @staticmethod
            def backward(ctx, grad):
                raise RuntimeError("SDS-PROBE: backward through the U-Net")
        return RaiseInBackward


def probe_loss_no_unet_grad(ctx):
    torch = _torch()
    fn_raise = _Raise.make()

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
            self.saw_grad = False

        def forward(self, x, t, cond=None):
            self.saw_grad = self.saw_grad or (torch.is_grad_enabled() and x.requires_grad)
            label = (cond or {}).get("label")
            shift = 0.0 if label is None else 0.1 * label.to(x.dtype)[:, None, None, None]
            return self.weight * fn_raise.apply(x) + shift

    model = Model()
    images, cond = _loss_inputs(ctx)
    raised = ""
    try:
        loss = ctx.fn("sds_loss")(images, model, _schedule(GRAD_T), cond, 3.0, T_RANGE, ctx.generator(1))
        loss.reshape(()).backward()
    except RuntimeError as err:
        if "SDS-PROBE" not in str(err):
            raise
        raised = str(err)
    return {"raised": raised, "param_grad": model.weight.grad is not None,
            "images_grad": images.grad is not None and bool(torch.isfinite(images.grad).all())}


def judge_loss_no_unet_grad(student, reference, ctx):
    if student["raised"]:
        return Verdict(False, "sds_loss: backward() went through eps_model (an eps-model whose backward raises was "
                              "called): SDS skips the U-Net Jacobian. Compute eps_hat under torch.no_grad() and hand the "
                              "gradient to autograd with the detached target (gradient through the U-Net?)")
    if student["param_grad"]:
        return Verdict(False, "sds_loss: a gradient reached eps_model's parameters; the prior is frozen and must not be "
                              "differentiated")
    if not student["images_grad"]:
        return Verdict(False, "sds_loss: no (finite) gradient reached the images")
    return Verdict(True, "sds_loss: no gradient reaches or passes through eps_model; the images get one")


def probe_loss_timesteps(ctx):
    torch = _torch()
    ts, fn = [], ctx.fn("sds_loss")
    for k in range(4):
        model = _Recorder(200)
        images = torch.rand(256, 3, 1, 1, dtype=torch.float64, requires_grad=True)
        fn(images, model, _schedule(200), None, 1.0, T_RANGE, ctx.generator(k))
        rec = model.record()
        if rec["calls"] == 0:
            return {"problem": "sds_loss never called eps_model"}
        ts.append(rec["rows_t"])
    return {"t": torch.cat(ts), "calls": rec["calls"]}


def judge_loss_timesteps(student, reference, ctx):
    t = as_array(student["t"], "t")
    lo, hi = _t_bounds(200)
    if t.min() < lo or t.max() > hi:
        return Verdict(False, f"sds_loss: eps_model saw timesteps in [{t.min():.0f}, {t.max():.0f}], DreamFusion's range "
                              f"for T = 200 is [{lo}, {hi}] (t sampled over the whole range?). Use sds_timestep")
    if np.unique(t).size < 10:
        return Verdict(False, f"sds_loss: only {np.unique(t).size} distinct timesteps over {t.size} samples: draw t per "
                              "sample")
    if int(student["calls"]) != 1:
        return Verdict(False, f"sds_loss with guidance_scale=1 and cond=None should call eps_model once, it called it "
                              f"{student['calls']} times")
    return Verdict(True, "sds_loss: one call, timesteps drawn per sample in [0.02 T, 0.98 T]")


def _small_unet(ctx):
    torch = _torch()
    torch.manual_seed(ctx.seed % (2 ** 31))
    model = ctx.deps.UNet(in_channels=3, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attn_levels=(1,),
                          num_classes=5, use_view=True)
    return model.eval().requires_grad_(False)


def probe_loss_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    model = _small_unet(ctx).double()  # float64: batching the two branches or not changes nothing visible
    images = (2 * torch.rand(3, 3, 8, 8, generator=g, dtype=torch.float64) - 1).requires_grad_(True)
    cond = {"label": torch.tensor([2, 0, 4]), "view": torch.rand(3, 2, generator=g, dtype=torch.float64) * 3}
    scale = float(1 + 20 * torch.rand(1, generator=g))
    loss = ctx.fn("sds_loss")(images, model, _schedule(60), cond, scale, (0.1, 0.9), ctx.generator(1))
    loss.reshape(()).backward()
    uniform_images = images.detach().clone().requires_grad_(True)
    loss_u = ctx.fn("sds_loss")(uniform_images, model, _schedule(60), cond, 1.0, T_RANGE, ctx.generator(2), "uniform")
    loss_u.reshape(()).backward()
    return {"loss": loss.detach().reshape(()), "grad": images.grad, "loss_uniform": loss_u.detach().reshape(()),
            "grad_uniform": uniform_images.grad}


def _loss_device(ctx, torch):
    images, cond = _loss_inputs(ctx, torch.float64, ctx.device)
    loss = ctx.fn("sds_loss")(images, _Recorder(GRAD_T), _schedule(GRAD_T, ctx.device), cond, 2.0, T_RANGE,
                              ctx.generator())
    loss.reshape(()).backward()
    return loss.detach().reshape(()), images.grad


# ----------------------------------------------------------------------------- quality: SDS itself
# The quality check compares SDS driven by your loss with SDS driven by the reference's: same priors, same
# budget, whatever GEN3D_MODE says. It distills the small priors when `make priors` has built them (there the
# category-only prior grows the Janus problem and the view-aware one paints the emblem on the front only, so
# the ordering and the front emblem are checked); otherwise the smoke priors, trained in seconds on first use,
# where only the category score means anything.
QUALITY_SEED = 5001


def grader_prior_mode() -> str:
    """"small" when both small priors are on disk and current (never trained here: that takes minutes),
    else "smoke"."""
    from gen3d import hw_sds

    current = [hw_sds.prior_is_current(hw_sds.sds_prior_path(kind, "small"), kind, "small")
               for kind in hw_sds.PRIOR_KINDS]
    return "small" if all(current) else "smoke"


def probe_sds_quality(ctx):
    torch = _torch()
    from gen3d import hw_pigan, hw_sds

    mode = grader_prior_mode()
    deps = ctx.deps
    try:
        try:  # into data/priors (the reference's side may write there), else into the work folder
            paths = hw_sds.ensure_priors(mode, pieces=deps, log=lambda *a: None)
        except OSError:
            paths = hw_sds.ensure_priors(mode, root=ctx.workdir, pieces=deps, log=lambda *a: None)
    except OSError as err:
        return {"problem": f"the SDS priors are missing and could not be built ({err}); run "
                           "`python -m gen3d.hw_sds priors` first"}
    cfg = hw_sds.quality_config(mode)
    renderer = hw_pigan.Renderer(deps.get_rays, deps.stratified_depths, deps.volume_render)
    label = hw_sds.category_index(cfg.category)
    out = {"mode": mode}
    for kind in hw_sds.PRIOR_KINDS:
        model, schedule, config = hw_sds.load_sds_prior(paths[kind], deps.UNet, deps.make_beta_schedule,
                                                        deps.schedule_from_betas, ctx.device)
        run = hw_sds.run_sds(ctx.fn("sds_loss"), model, schedule, cfg, renderer, ctx.fn("query_voxels"),
                             ctx.fn("random_sds_cameras"), deps.look_at_origin, label, ctx.device, progress=False)
        snaps = run["snapshots"]
        out[f"{kind}_initial"] = snaps[0]
        out[f"{kind}_final"] = snaps[max(snaps)]
        out[f"{kind}_fingerprint"] = config["fingerprint"]
        out["azimuths"] = run["azimuths"]
    out["label"] = label
    return out


def judge_sds_quality(student, reference, ctx):
    from gen3d import hw_sds

    if student["view_fingerprint"] != reference["view_fingerprint"] or student["mode"] != reference["mode"]:
        return Verdict(False, "sds_loss quality: the reference figures were computed with other priors "
                              f"({reference['view_fingerprint']} vs {student['view_fingerprint']}); clear .cache/reference "
                              "and grade again (grader set-up problem, not your code)")
    az, label = as_array(student["azimuths"], "azimuths"), int(student["label"])
    import torch

    def metrics(side, key):
        images = torch.as_tensor(as_array(side[key], key)).float()
        if not torch.isfinite(images).all():
            return None
        return hw_sds.view_metrics(images, torch.as_tensor(az), label)

    got = {k: metrics(student, f"{k}_final") for k in hw_sds.PRIOR_KINDS}
    want = {k: metrics(reference, f"{k}_final") for k in hw_sds.PRIOR_KINDS}
    start = metrics(reference, "view_initial")
    if any(v is None for v in got.values()):
        return Verdict(False, "sds_loss quality: SDS with your loss produced NaN/inf renders")
    summary = (f"category score {got['view']['category']:.2f} (reference {want['view']['category']:.2f}, initial blob "
               f"{start['category']:.2f}); Janus score view-aware prior {got['view']['janus']:.2f} vs category-only "
               f"{got['category']['janus']:.2f} (reference {want['view']['janus']:.2f} vs {want['category']['janus']:.2f}); "
               f"front rate view-aware {got['view']['front_rate']:.2f} (reference {want['view']['front_rate']:.2f})")
    problems = []
    if got["view"]["category"] < want["view"]["category"] - hw_sds.QUALITY_MARGIN:
        problems.append("the target-category score is lower than the reference's on the same budget")
    if want["view"]["category"] > start["category"] + hw_sds.QUALITY_MARGIN and got["view"]["category"] <= start["category"]:
        problems.append("SDS did not raise the target-category score of the renders")
    if want["view"]["janus"] < want["category"]["janus"] and not got["view"]["janus"] < got["category"]["janus"]:
        problems.append("with the view-aware prior the Janus score is not below the category-only prior's")
    if got["view"]["janus"] > want["view"]["janus"] + hw_sds.QUALITY_MARGIN:
        problems.append("the Janus score with the view-aware prior is higher than the reference's")
    front_lost = got["view"]["front_rate"] < want["view"]["front_rate"] - hw_sds.QUALITY_MARGIN
    if want["view"]["front_rate"] >= 0.5 and front_lost:
        problems.append("with the view-aware prior the emblem is missing from the front views (the reference "
                        "paints it there): a fix of the Janus problem keeps the front")
    if problems:
        return Verdict(False, f"SDS with your sds_loss (reference priors, renderer and cameras; "
                              f"{student['mode']} budget): {'; '.join(problems)}. {summary}. Check the sign, the weight "
                              "and the guidance of sds_loss.")
    return Verdict(True, f"SDS with your sds_loss: {summary}")


# ----------------------------------------------------------------------------- view_condition
def _buckets_np(azimuth, elevation):
    wrapped = np.arctan2(np.sin(azimuth), np.cos(azimuth))
    bucket = np.ones(azimuth.shape, dtype=np.int64)
    bucket[np.abs(wrapped) < FRONT] = 0
    bucket[np.abs(wrapped) > BACK] = 2
    bucket[elevation > OVERHEAD] = 3
    return wrapped, bucket


VIEW_AZ = (0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 2.6, -2.6, 3.1, 7.0, -6.0, 9.0, 0.2, 3.0)
VIEW_EL = (0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 1.2, 1.3)


def _view_outputs(out, batch):
    torch = _torch()
    if not isinstance(out, dict) or "view" not in out or "bucket" not in out:
        return None, f"view_condition should return a dict with 'view' and 'bucket', got {type(out).__name__}" + \
            (f" with keys {sorted(out)}" if isinstance(out, dict) else "")
    if not torch.is_tensor(out["view"]) or tuple(out["view"].shape) != (batch, 2):
        return None, f"view_condition: 'view' should be ({batch}, 2), got {getattr(out['view'], 'shape', None)}"
    if not torch.is_tensor(out["bucket"]) or tuple(out["bucket"].shape) != (batch,):
        return None, f"view_condition: 'bucket' should be ({batch},), got {getattr(out['bucket'], 'shape', None)}"
    return out, None


def probe_view_buckets(ctx):
    torch = _torch()
    az, el = torch.tensor(VIEW_AZ, dtype=torch.float64), torch.tensor(VIEW_EL, dtype=torch.float64)
    out, problem = _view_outputs(ctx.fn("view_condition")(az, el), len(VIEW_AZ))
    if problem:
        return {"problem": problem}
    return {"view": out["view"], "bucket": out["bucket"], "bucket_dtype": str(out["bucket"].dtype)}


def judge_view_buckets(student, reference, ctx):
    az, el = np.array(VIEW_AZ), np.array(VIEW_EL)
    wrapped, want = _buckets_np(az, el)
    view, got = as_array(student["view"], "view"), as_array(student["bucket"], "bucket")
    if not np.allclose(view[:, 1], el, atol=1e-9):
        return Verdict(False, "view_condition: view[:, 1] must be the elevation")
    if not np.allclose(view[:, 0], wrapped, atol=1e-9):
        bad = int(np.argmax(np.abs(view[:, 0] - wrapped)))
        hint = " (not wrapped: use atan2(sin a, cos a))" if np.isclose(view[bad, 0], az[bad]) else ""
        return Verdict(False, f"view_condition: view[:, 0] must be the azimuth wrapped to (-pi, pi]; azimuth "
                              f"{az[bad]} gave {view[bad, 0]:.4f}, expected {wrapped[bad]:.4f}{hint}")
    if student["bucket_dtype"] != "torch.int64":
        return Verdict(False, f"view_condition: 'bucket' must be long (int64), got {student['bucket_dtype']}")
    if not np.array_equal(got, want):
        names = ("front", "side", "back", "overhead")
        bad = int(np.nonzero(got != want)[0][0])
        return Verdict(False, f"view_condition: (azimuth {az[bad]}, elevation {el[bad]}) is a {names[want[bad]]} view "
                              f"(bucket {want[bad]}), got bucket {got[bad]}. Overhead (elevation > 60 deg) wins over "
                              "the azimuth; front |a| < 45 deg, back |a| > 135 deg of the WRAPPED azimuth, else side")
    return Verdict(True, "view_condition: wrapped (azimuth, elevation) and DreamFusion's front/side/back/overhead buckets")


def probe_view_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    az = 20 * torch.rand(40, generator=g) - 10
    el = 2.0 * torch.rand(40, generator=g) - 0.5
    out, problem = _view_outputs(ctx.fn("view_condition")(az, el), 40)
    return {"problem": problem} if problem else {"view": out["view"], "bucket": out["bucket"]}


def _view_device(ctx, torch):
    az = torch.linspace(-4, 4, 7, dtype=torch.float64, device=ctx.device)
    out = ctx.fn("view_condition")(az, 0.2 * az)
    return out["view"], out["bucket"]


# ----------------------------------------------------------------------------- random_sds_cameras
CAM_KEYS = ("c2w", "azimuth", "elevation", "view", "bucket")


def _cams(ctx, batch, generator, elevation_range=(-0.2, 0.7), radius=3.4, device=None):
    out = ctx.fn("random_sds_cameras")(batch, _look_at, radius, elevation_range, generator, device)
    if not isinstance(out, dict) or any(k not in out for k in CAM_KEYS):
        return None, (f"random_sds_cameras should return a dict with keys {list(CAM_KEYS)}, got "
                      f"{sorted(out) if isinstance(out, dict) else type(out).__name__}")
    shapes = {"c2w": (batch, 4, 4), "azimuth": (batch,), "elevation": (batch,), "view": (batch, 2), "bucket": (batch,)}
    for key, shape in shapes.items():
        if tuple(getattr(out[key], "shape", ())) != shape:
            return None, f"random_sds_cameras: '{key}' should have shape {shape}, got {getattr(out[key], 'shape', None)}"
    return out, None


def probe_cams_distribution(ctx):
    out, problem = _cams(ctx, 4000, ctx.generator())
    if problem:
        return {"problem": problem}
    return {k: out[k] for k in CAM_KEYS}


def judge_cams_distribution(student, reference, ctx):
    az, el = as_array(student["azimuth"], "azimuth"), as_array(student["elevation"], "elevation")
    c2w = as_array(student["c2w"], "c2w")
    frac = (az + math.pi) / (2 * math.pi)
    ks = _ks_uniform(frac)
    if frac.min() < -1e-6 or frac.max() > 1 + 1e-6 or ks * math.sqrt(len(az)) > KS_CRITICAL:
        hint = " (only half the circle: a = (2 u - 1) pi)" if az.min() > -1e-6 else ""
        return Verdict(False, f"random_sds_cameras: azimuths should be U(-pi, pi) (all around the object), got "
                              f"{describe(az)}, KS statistic {ks:.3g}{hint}")
    frac = (el + 0.2) / 0.9
    ks = _ks_uniform(frac)
    if frac.min() < -1e-6 or frac.max() > 1 + 1e-6 or ks * math.sqrt(len(el)) > KS_CRITICAL:
        return Verdict(False, f"random_sds_cameras: elevations should be U(low, high) = U(-0.2, 0.7), got {describe(el)}")
    centre = 3.4 * np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=-1)
    if not np.allclose(c2w[:, :3, 3], centre, atol=1e-4):
        return Verdict(False, "random_sds_cameras: c2w must be look_at_origin(azimuth, elevation, radius) of the "
                              "returned angles (camera centre radius (cos e sin a, sin e, cos e cos a))")
    wrapped, bucket = _buckets_np(az.astype(np.float64), el.astype(np.float64))
    view = as_array(student["view"], "view")
    if not np.allclose(view, np.stack([wrapped, el], axis=-1), atol=1e-5):
        return Verdict(False, "random_sds_cameras: 'view' must be view_condition(azimuth, elevation)['view']")
    if np.mean(as_array(student["bucket"], "bucket") == bucket) < 0.999:
        return Verdict(False, "random_sds_cameras: 'bucket' must be view_condition(azimuth, elevation)['bucket']")
    return Verdict(True, "random_sds_cameras: azimuth U(-pi, pi), elevation U(low, high), cameras and views agree")


def probe_cams_generator(ctx):
    torch = _torch()
    a, _ = _cams(ctx, 6, ctx.generator(1))
    b, _ = _cams(ctx, 6, ctx.generator(1))
    c, problem = _cams(ctx, 6, ctx.generator(2))
    if problem or a is None:
        return {"problem": problem or "random_sds_cameras returned malformed outputs"}
    return {"same": bool(torch.equal(a["c2w"], b["c2w"])), "differ": not bool(torch.equal(a["c2w"], c["c2w"])),
            "dtype": str(a["azimuth"].dtype)}


def judge_cams_generator(student, reference, ctx):
    if not student["same"]:
        return Verdict(False, "random_sds_cameras: the same generator seed gave different cameras; draw with generator=")
    if not student["differ"]:
        return Verdict(False, "random_sds_cameras: different generator seeds gave the same cameras")
    if student["dtype"] != "torch.float32":
        return Verdict(False, f"random_sds_cameras: angles should be float32, got {student['dtype']}")
    return Verdict(True, "random_sds_cameras: reproducible from its generator")


def probe_cams_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    low = float(torch.rand(1, generator=g)) - 0.5
    out, problem = _cams(ctx, 9, ctx.generator(1), (low, low + 0.8), 2.5)
    return {"problem": problem} if problem else {k: out[k] for k in ("c2w", "azimuth", "elevation")}


def _cams_device(ctx, torch):
    out, problem = _cams(ctx, 3, ctx.generator(), device=ctx.device)
    if problem:
        raise ValueError(problem)
    return out["c2w"], out["view"]


# ----------------------------------------------------------------------------- query_voxels
VOX_R = 6
VOX_SLOPES = (1.5, -0.8, 2.0, 0.7)  # density ~ x, red ~ x, green ~ y, blue ~ z


def _linear_grids(torch, resolution=VOX_R, dtype=None):
    dtype = dtype or torch.float64
    c = -1 + (2 * torch.arange(resolution, dtype=dtype) + 1) / resolution
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")                                      # (R, R, R)
    density = (VOX_SLOPES[0] * x - 0.3)[None, None]
    color = torch.stack([VOX_SLOPES[1] * x, VOX_SLOPES[2] * y, VOX_SLOPES[3] * z])[None]  # (1, 3, R, R, R)
    return density, color


def probe_vox_analytic(ctx):
    torch = _torch()
    g = ctx.generator()
    density, color = _linear_grids(torch)
    inner = 1 - 1 / VOX_R
    points = (2 * torch.rand(2, 7, 3, generator=g, dtype=torch.float64) - 1) * inner         # inside the centres' hull
    outside = torch.tensor([[1.2, 0.0, 0.0], [0.0, -1.1, 0.3], [0.2, 0.1, 1.05]], dtype=torch.float64)
    fn = ctx.fn("query_voxels")
    out = fn(density, color, points)
    out_far = fn(density, color, outside)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return {"problem": f"query_voxels should return (sigma, rgb), got {type(out).__name__}"}
    sigma, rgb = out
    if tuple(sigma.shape) != (2, 7) or tuple(rgb.shape) != (2, 7, 3):
        return {"problem": f"query_voxels: points (2, 7, 3) should give sigma (2, 7) and rgb (2, 7, 3), got "
                           f"{tuple(sigma.shape)} and {tuple(rgb.shape)}"}
    return {"points": points, "sigma": sigma, "rgb": rgb, "sigma_out": out_far[0]}


def judge_vox_analytic(student, reference, ctx):
    p = as_array(student["points"], "points")
    softplus = np.log1p(np.exp(VOX_SLOPES[0] * p[..., 0] - 0.3))
    rgb = 1 / (1 + np.exp(-np.stack([VOX_SLOPES[1] * p[..., 0], VOX_SLOPES[2] * p[..., 1], VOX_SLOPES[3] * p[..., 2]],
                                    axis=-1)))
    got_rgb, got_sigma = as_array(student["rgb"], "rgb"), as_array(student["sigma"], "sigma")
    if not np.allclose(got_rgb, rgb, atol=1e-6):
        hints = []
        swapped = 1 / (1 + np.exp(-np.stack([VOX_SLOPES[1] * p[..., 2], VOX_SLOPES[2] * p[..., 1],
                                              VOX_SLOPES[3] * p[..., 0]], axis=-1)))
        if np.allclose(got_rgb, swapped, atol=1e-6):
            hints.append("x and z are swapped: grid_sample reads the last coordinate dimension as (x, y, z) = (W, H, D), "
                         "so pass the world points as they are")
        stretched = 1 / (1 + np.exp(-np.stack([VOX_SLOPES[1] * p[..., 0], VOX_SLOPES[2] * p[..., 1],
                                               VOX_SLOPES[3] * p[..., 2]], axis=-1) * (VOX_R - 1) / VOX_R))
        if np.allclose(got_rgb, stretched, atol=1e-6):
            hints.append("align_corners=True puts the voxel centres at the cube's faces; the kit's centres are at "
                         "-1 + (2 i + 1) / R (align_corners=False)")
        hint = " Likely: " + "; ".join(hints) + "." if hints else ""
        return Verdict(False, f"query_voxels: a colour grid linear in (x, y, z) must interpolate exactly; max error "
                              f"{np.abs(got_rgb - rgb).max():.3g}.{hint}")
    if not np.allclose(got_sigma, softplus, atol=1e-6):
        return Verdict(False, f"query_voxels: sigma should be softplus(trilinear density); max error "
                              f"{np.abs(got_sigma - softplus).max():.3g}")
    out = as_array(student["sigma_out"], "sigma outside")
    if np.abs(out).max() > 0:
        return Verdict(False, f"query_voxels: points outside the cube [-1, 1]^3 must have sigma = 0, got {out.tolist()}")
    return Verdict(True, "query_voxels: exact on linear grids (axes, voxel centres), softplus/sigmoid, empty outside")


def probe_vox_shape(ctx):
    torch = _torch()
    density, color = _linear_grids(torch, 4, torch.float32)
    shapes = []
    for batch_shape in ((), (3,), (2, 4, 5)):
        points = torch.rand(batch_shape + (3,)) * 2 - 1
        out = ctx.fn("query_voxels")(density, color, points)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            return {"problem": f"query_voxels should return (sigma, rgb), got {type(out).__name__}"}
        shapes.append([list(out[0].shape), list(out[1].shape), str(out[0].dtype)])
    return {"shapes": shapes}


def judge_vox_shape(student, reference, ctx):
    for batch_shape, (sigma, rgb, dtype) in zip(((), (3,), (2, 4, 5)), student["shapes"]):
        if tuple(sigma) != batch_shape or tuple(rgb) != batch_shape + (3,):
            return Verdict(False, f"query_voxels: points {batch_shape + (3,)} should give sigma {batch_shape} and rgb "
                                  f"{batch_shape + (3,)}, got {tuple(sigma)} and {tuple(rgb)} (reshape back to "
                                  "points.shape[:-1])")
        if dtype != "torch.float32":
            return Verdict(False, f"query_voxels: float32 points gave {dtype} sigma")
    return Verdict(True, "query_voxels: sigma (...) and rgb (..., 3) for any batch shape of points")


def probe_vox_gradcheck(ctx):
    torch = _torch()
    g = ctx.generator()
    density = torch.randn(1, 1, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    color = torch.randn(1, 3, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    points = 1.6 * torch.rand(4, 3, generator=g, dtype=torch.float64) - 0.8
    fn = ctx.fn("query_voxels")

    def f(d, c):
        sigma, rgb = fn(d, c, points)
        return sigma, rgb

    try:
        ok = bool(torch.autograd.gradcheck(f, (density, color), eps=1e-6, atol=1e-5, raise_exception=True))
        message = ""
    except Exception as err:  # noqa: BLE001 - gradcheck's failure is the message
        ok, message = False, str(err)[:400]
    return {"ok": ok, "message": message}


def judge_vox_gradcheck(student, reference, ctx):
    if student["ok"]:
        return Verdict(True, "query_voxels: gradients w.r.t. both grids pass torch.autograd.gradcheck (float64)")
    return Verdict(False, f"query_voxels: gradcheck w.r.t. the grids failed: {student['message']}. Keep everything "
                          "in torch ops on the grids (no .detach(), no numpy, no in-place writes)")


def probe_vox_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    density = 2 * torch.randn(1, 1, 5, 5, 5, generator=g)
    color = torch.randn(1, 3, 5, 5, 5, generator=g)
    points = 2.6 * torch.rand(50, 3, generator=g) - 1.3
    sigma, rgb = ctx.fn("query_voxels")(density, color, points)
    return {"sigma": sigma, "rgb": rgb}


def _vox_device(ctx, torch):
    density, color = _linear_grids(torch)
    points = torch.rand(4, 5, 3, dtype=torch.float64) * 2 - 1
    return ctx.fn("query_voxels")(density.to(ctx.device), color.to(ctx.device), points.to(ctx.device))


# ----------------------------------------------------------------------------- the topic
F64 = "torch.float64"
CHECKS = [
    make_check("sds_timestep.range", "value", probe_timestep_range, judge_timestep_range, True, points=2),
    make_check("sds_timestep.generator", "value", probe_timestep_generator, judge_timestep_generator, True),
    make_check("sds_timestep.reference", "value", probe_timestep_reference,
           _reference_close("sds_timestep", {"t": "timesteps from the same generator"}, 0, 0,
                            "draw with ONE torch.randint(t_min, t_max + 1, (batch,), generator=generator)"), False),
    make_check("sds_timestep.device", "device", tensor_device_probe(_timestep_device), _judge_device("sds_timestep", ["torch.int64"]),
           True),

    make_check("sds_weight.value", "value", probe_weight_value, judge_weight_value, True, points=2),
    make_check("sds_weight.reference", "value", probe_weight_reference,
           _reference_close("sds_weight", {"w": "w(t) on the cosine schedule"}), False),
    make_check("sds_weight.device", "device", tensor_device_probe(_weight_device), _judge_device("sds_weight", [F64]), True),

    make_check("sds_loss.gradient", "gradient", probe_loss_gradient, judge_loss_gradient, True, points=4),
    make_check("sds_loss.no_unet_grad", "gradient", probe_loss_no_unet_grad, judge_loss_no_unet_grad, True, points=2),
    make_check("sds_loss.timesteps", "value", probe_loss_timesteps, judge_loss_timesteps, True),
    make_check("sds_loss.reference", "value", probe_loss_reference,
           _reference_close("sds_loss", {"loss": "loss (random U-Net, guided)", "grad": "gradient (guided)",
                                         "loss_uniform": "loss (uniform weight, s = 1)",
                                         "grad_uniform": "gradient (uniform weight, s = 1)"}, 1e-6, 1e-8,
                            "draw t = sds_timestep(...) first, then eps = randn(images.shape, generator, like=images)"),
           False, points=2),
    make_check("sds_loss.device", "device", tensor_device_probe(_loss_device), _judge_device("sds_loss", [F64, F64]), True),
    make_check("sds_loss.sds_quality", "quality", probe_sds_quality, judge_sds_quality, False, points=4, timeout=600.0,
           fixed_seed=QUALITY_SEED),

    make_check("view_condition.buckets", "value", probe_view_buckets, judge_view_buckets, True, points=2),
    make_check("view_condition.reference", "value", probe_view_reference,
           _reference_close("view_condition", {"view": "view", "bucket": "bucket"}), False),
    make_check("view_condition.device", "device", tensor_device_probe(_view_device),
           _judge_device("view_condition", [F64, "torch.int64"]), True),

    make_check("random_sds_cameras.distribution", "value", probe_cams_distribution, judge_cams_distribution, True, points=2),
    make_check("random_sds_cameras.generator", "value", probe_cams_generator, judge_cams_generator, True),
    make_check("random_sds_cameras.reference", "value", probe_cams_reference,
           _reference_close("random_sds_cameras", {"c2w": "cameras", "azimuth": "azimuths", "elevation": "elevations"},
                            1e-5, 1e-6, "draw all B azimuth uniforms first, then all B elevation uniforms"), False),
    make_check("random_sds_cameras.device", "device", tensor_device_probe(_cams_device),
           _judge_device("random_sds_cameras", ["torch.float32", "torch.float32"]), True),

    make_check("query_voxels.shape", "shape", probe_vox_shape, judge_vox_shape, True),
    make_check("query_voxels.analytic", "value", probe_vox_analytic, judge_vox_analytic, True, points=2),
    make_check("query_voxels.gradcheck", "gradient", probe_vox_gradcheck, judge_vox_gradcheck, True),
    make_check("query_voxels.reference", "value", probe_vox_reference,
           _reference_close("query_voxels", {"sigma": "sigma", "rgb": "rgb"}, 1e-5, 1e-6), False),
    make_check("query_voxels.device", "device", tensor_device_probe(_vox_device), _judge_device("query_voxels", [F64, F64]), True),
]

# the dataset renderer's cameras would do random_sds_cameras' job
KIT_CAMERAS = ("gen3d.render_data.orbit_camera", "gen3d.render_data.look_at", "gen3d.render_data.sample_cameras")
TOPIC = Topic(name="05_sds", notebook="solutions/05_sds/sds.ipynb", functions=FUNCTIONS, checks=CHECKS,
              depends=DEPENDS, forbidden=KIT_CAMERAS)
