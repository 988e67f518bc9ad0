"""Checks of topic 02 (pi-GAN): rays, sampling, volume rendering, FiLM-SIREN, poses, R1.

Public checks (``needs_reference=False``) use hand-computed cases, analytic scenes and invariants:
projecting points on the rays back into the camera, a homogeneous slab (opacity 1 - exp(-sigma L)),
inverse-CDF quantiles and a KS test for ``sample_pdf``, weight statistics for the SIREN
initialisation. Hidden checks compare with the reference on fresh random inputs, and one quality
check fits an analytic scene with your renderer and SIREN (``gen3d.hw_pigan.fit_scene``).
"""
from __future__ import annotations

import math

import numpy as np

from autograder.spec import (Topic, Verdict, all_of, as_array, describe, expect_close, make_check,
                             tensor_device_probe, tensor_problem)

FUNCTIONS = ["get_rays", "stratified_depths", "volume_render", "sample_pdf", "hierarchical_depths",
             "FiLMSiren", "MappingNetwork", "look_at_origin", "sample_camera_poses", "r1_penalty"]
PDF_EPS = 1e-5            # the notebook's constant (weights + PDF_EPS before normalising)
MAX_ELEVATION = math.radians(85.0)
KS_CRITICAL = 2.47        # sqrt(-ln(alpha / 2) / 2) at alpha = 1e-5: D_n * sqrt(n) above this fails
FIT_SEED = 1234


# ----------------------------------------------------------------------------- helpers (child side)
def _torch():
    import torch

    return torch


def _random_c2w(g, batch, dtype=None):
    """Random rigid camera-to-world matrices (B, 4, 4): rotation by QR, translation in [-3, 3]^3."""
    torch = _torch()
    dtype = dtype or torch.float64
    q, r = torch.linalg.qr(torch.randn(batch, 3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    q[:, :, 0] *= torch.sign(torch.det(q))[:, None]  # det +1
    c2w = torch.eye(4, dtype=torch.float64).repeat(batch, 1, 1)
    c2w[:, :3, :3] = q
    c2w[:, :3, 3] = 6 * torch.rand(batch, 3, generator=g, dtype=torch.float64) - 3
    return c2w.to(dtype)


def _render_outputs(out, batch_shape, n_samples):
    """Unpack ``volume_render``'s (color, depth, weights, opacity) or return a problem message."""
    if not isinstance(out, (tuple, list)) or len(out) != 4:
        return None, ("volume_render should return a tuple (color, depth, weights, opacity), got "
                      f"{type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
    shapes = (batch_shape + (3,), batch_shape, batch_shape + (n_samples,), batch_shape)
    for value, shape, label in zip(out, shapes, ("color", "depth", "weights", "opacity")):
        problem = tensor_problem(value, shape, f"volume_render's {label}")
        if problem:
            return None, problem
    return dict(zip(("color", "depth", "weights", "opacity"), out)), None


def _sorted_depths(g, batch_shape, n, low=2.0, high=6.0, dtype=None):
    torch = _torch()
    steps = torch.rand(batch_shape + (n,), generator=g, dtype=torch.float64) + 0.05
    depths = low + (high - low) * torch.cumsum(steps, -1) / steps.sum(-1, keepdim=True) * (n - 0.5) / n
    return depths.to(dtype or torch.float64)


def _judge_device(function, dtype="torch.float64"):
    def judge(student, reference, ctx):
        if set(student["devices"]) != {student["want_device"]}:
            return Verdict(False, f"{function}: inputs on {student['want_device']} gave outputs on {student['devices']}; "
                                  "create new tensors with device=/dtype= of the inputs (or *_like), never .cpu()/.cuda()")
        if any(d != dtype for d in student["dtypes"]):
            return Verdict(False, f"{function}: float64 inputs gave {student['dtypes']}; keep the input dtype "
                                  "(pass dtype= when you create tensors)")
        if not student["finite"]:
            return Verdict(False, f"{function}: outputs on {student['want_device']} contain NaN/inf")
        return Verdict(True, f"{function} keeps device {student['want_device']} and dtype {dtype}")
    return judge


# ----------------------------------------------------------------------------- get_rays
RAY_H, RAY_W, RAY_FOV = 4, 6, 50.0


def probe_rays_shape(ctx):
    torch = _torch()
    c2w = _random_c2w(ctx.generator(), 2, torch.float32)
    origins, directions = ctx.fn("get_rays")(c2w, 3, 5, 40.0)
    problem = tensor_problem(origins, (2, 3, 5, 3), "origins") or tensor_problem(directions, (2, 3, 5, 3), "directions")
    if problem:
        return {"problem": problem}
    return {"norms": directions.norm(dim=-1), "origin_err": (origins - c2w[:, None, None, :3, 3]).abs().max()}


def judge_rays_shape(student, reference, ctx):
    norms = as_array(student["norms"], "direction norms")
    if np.abs(norms - 1).max() > 1e-5:
        return Verdict(False, f"get_rays: directions must have unit length; norms are in [{norms.min():.4g}, "
                              f"{norms.max():.4g}]. Divide each direction by its norm.")
    if float(student["origin_err"]) > 1e-5:
        return Verdict(False, "get_rays: every ray must start at the camera centre c2w[:, :3, 3] "
                              f"(max error {float(student['origin_err']):.3g})")
    return Verdict(True, "get_rays: shapes (B, H, W, 3), unit directions, origins at the camera centre")


def probe_rays_projection(ctx):
    torch = _torch()
    g = ctx.generator()
    c2w = _random_c2w(g, 3)
    origins, directions = ctx.fn("get_rays")(c2w, RAY_H, RAY_W, RAY_FOV)
    shape = (3, RAY_H, RAY_W, 3)
    problem = tensor_problem(origins, shape, "origins") or tensor_problem(directions, shape, "directions")
    if problem:
        return {"problem": problem}
    t = 1 + 4 * torch.rand(3, RAY_H, RAY_W, 1, generator=g, dtype=torch.float64)
    points = origins.double() + t * directions.double()  # (B, H, W, 3) points on the rays
    rotation, centre = c2w[:, :3, :3], c2w[:, :3, 3]
    cam = torch.einsum("bji,bhwj->bhwi", rotation, points - centre[:, None, None, :])  # world -> camera
    tan_x = math.tan(math.radians(RAY_FOV) / 2)
    tan_y = tan_x * RAY_H / RAY_W
    depth = -cam[..., 2]
    col = (cam[..., 0] / depth / tan_x + 1) / 2 * RAY_W - 0.5
    row = (1 - cam[..., 1] / depth / tan_y) / 2 * RAY_H - 0.5
    return {"row": row, "col": col, "behind": int((depth <= 0).sum())}


def judge_rays_projection(student, reference, ctx):
    row, col = as_array(student["row"], "rows"), as_array(student["col"], "columns")
    if int(student["behind"]) > 0:
        return Verdict(False, f"get_rays: {student['behind']} rays point behind the camera; the camera looks "
                              "down its -z axis, so the camera-frame direction has z = -1")
    want_r = np.broadcast_to(np.arange(RAY_H)[None, :, None], row.shape)
    want_c = np.broadcast_to(np.arange(RAY_W)[None, None, :], col.shape)
    err = max(np.abs(row - want_r).max(), np.abs(col - want_c).max())
    if err < 1e-4:
        return Verdict(True, "get_rays: points on every ray project back onto their pixel centres")
    hints = []
    if np.allclose(row, want_r - 0.5, atol=1e-3) or np.allclose(col, want_c - 0.5, atol=1e-3):
        hints.append("rays go through pixel corners: use (c + 0.5) and (r + 0.5), the pixel centres")
    if np.allclose(row, RAY_H - 1 - want_r, atol=1e-3):
        hints.append("the image is upside down: row 0 is the TOP of the image (+y in the camera frame)")
    if np.allclose(col, RAY_W - 1 - want_c, atol=1e-3):
        hints.append("the image is mirrored left-right: column 0 is the left (-x)")
    scale_r = (row - (RAY_H - 1) / 2) / (want_r - (RAY_H - 1) / 2)
    if np.allclose(scale_r, scale_r.flat[0], atol=1e-3) and abs(scale_r.flat[0] - 1) > 1e-3:
        hints.append(f"the vertical extent is off by a factor {scale_r.flat[0]:.3g}: fov_degrees spans the image "
                     "WIDTH, tan_y = tan(fov / 2) * H / W")
    hint = " Likely: " + "; ".join(hints) + "." if hints else ""
    return Verdict(False, f"get_rays: a point on the ray of pixel (r, c) should project back to (r, c); max error "
                          f"{err:.3g} pixels (first pixel projects to row {row.flat[0]:.3f}, column "
                          f"{col.flat[0]:.3f}, expected 0, 0).{hint}")


def probe_rays_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    fov = float(20 + 100 * torch.rand(1, generator=g))
    origins, directions = ctx.fn("get_rays")(_random_c2w(g, 2, torch.float32), 5, 7, fov)
    return {"origins": origins, "directions": directions}


def judge_rays_reference(student, reference, ctx):
    return all_of(expect_close(student, reference, "origins", "get_rays origins", 1e-4, 1e-5),
                  expect_close(student, reference, "directions", "get_rays directions", 1e-4, 1e-5))


def _rays_device(ctx, torch):
    c2w = _random_c2w(ctx.generator(), 2, torch.float64).to(ctx.device)
    return ctx.fn("get_rays")(c2w, 3, 4, 45.0)


# ----------------------------------------------------------------------------- stratified_depths
def probe_strata(ctx):
    torch = _torch()
    fn = ctx.fn("stratified_depths")
    fixed = fn(2.0, 6.0, 8, (3, 4), False, ctx.generator(), torch.device("cpu"), torch.float64)
    random = fn(2.0, 6.0, 8, (50, 40), True, ctx.generator(1), torch.device("cpu"), torch.float64)
    problem = tensor_problem(fixed, (3, 4, 8), "depths (perturb=False)") or tensor_problem(random, (50, 40, 8),
                                                                                  "depths (perturb=True)")
    return {"problem": problem} if problem else {"fixed": fixed, "random": random}


def judge_strata(student, reference, ctx):
    fixed, rand = as_array(student["fixed"], "depths"), as_array(student["random"], "depths")
    centres = 2.0 + 0.5 * (np.arange(8) + 0.5)
    if not np.allclose(fixed, centres, atol=1e-6):
        return Verdict(False, f"stratified_depths(2, 6, 8, perturb=False) should be the bin centres {centres.tolist()}, "
                              f"got {np.round(fixed.reshape(-1, 8)[0], 4).tolist()}")
    lower = 2.0 + 0.5 * np.arange(8)
    frac = (rand - lower) / 0.5  # position inside each bin
    if frac.min() < -1e-6 or frac.max() > 1 + 1e-6:
        return Verdict(False, "stratified_depths(perturb=True): sample i must lie in bin i, "
                              f"[near + i h, near + (i + 1) h]; positions inside the bins span [{frac.min():.3g}, "
                              f"{frac.max():.3g}] bin widths (expected [0, 1])")
    if np.any(np.diff(rand, axis=-1) < 0):
        return Verdict(False, "stratified_depths: depths must be sorted along the last axis")
    if np.std(frac) < 0.05:
        return Verdict(False, "stratified_depths(perturb=True) returned (nearly) fixed depths: draw a uniform "
                              "position inside every bin")
    ks = _ks_uniform(frac.reshape(-1)[:4000])
    if ks * math.sqrt(min(4000, frac.size)) > KS_CRITICAL:
        return Verdict(False, f"stratified_depths(perturb=True): positions inside the bins are not uniform "
                              f"(KS statistic {ks:.3g}); use u ~ U(0, 1) per sample")
    return Verdict(True, "stratified_depths: bin centres without perturbation, one uniform sample per bin with it")


def _ks_uniform(values):
    x = np.sort(np.clip(values, 0, 1))
    n = len(x)
    return float(max((np.arange(1, n + 1) / n - x).max(), (x - np.arange(n) / n).max()))


def probe_strata_generator(ctx):
    torch = _torch()
    fn = ctx.fn("stratified_depths")
    a = fn(1.0, 3.0, 6, (5,), True, ctx.generator(3), torch.device("cpu"), torch.float32)
    b = fn(1.0, 3.0, 6, (5,), True, ctx.generator(3), torch.device("cpu"), torch.float32)
    c = fn(1.0, 3.0, 6, (5,), True, ctx.generator(4), torch.device("cpu"), torch.float32)
    return {"same": bool(torch.equal(a, b)), "differ": not bool(torch.equal(a, c)), "dtype": str(a.dtype)}


def judge_strata_generator(student, reference, ctx):
    if not student["same"]:
        return Verdict(False, "stratified_depths: two calls with generators of the same seed gave different depths; "
                              "draw the uniforms with torch.rand(..., generator=generator)")
    if not student["differ"]:
        return Verdict(False, "stratified_depths: generators with different seeds gave the same depths")
    if student["dtype"] != "torch.float32":
        return Verdict(False, f"stratified_depths(dtype=torch.float32) returned {student['dtype']}")
    return Verdict(True, "stratified_depths: reproducible from its generator")


def probe_strata_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    near = float(0.5 + torch.rand(1, generator=g))
    far = near + float(1 + 3 * torch.rand(1, generator=g))
    return {"depths": ctx.fn("stratified_depths")(near, far, 11, (2, 3), False, g, torch.device("cpu"), torch.float32)}


def _strata_device(ctx, torch):
    return ctx.fn("stratified_depths")(1.0, 2.0, 5, (2, 3), True, ctx.generator(), ctx.device, torch.float64)


# ----------------------------------------------------------------------------- volume_render
SLAB_SIGMAS = (0.0, 0.7, 2.5, 40.0)
SLAB_RGB = (0.2, 0.5, 0.9)


def probe_slab(ctx):
    torch = _torch()
    g = ctx.generator()
    n_rays = len(SLAB_SIGMAS)
    depths = torch.linspace(0.0, 4.0, 41, dtype=torch.float64).expand(n_rays, 41).contiguous()  # spacing 0.1
    inside = (depths >= 1.0 - 1e-9) & (depths < 2.0 - 1e-9)  # samples 10..19: L = 1.0
    sigma = torch.tensor(SLAB_SIGMAS, dtype=torch.float64)[:, None] * inside
    rgb = torch.rand(n_rays, 41, 3, generator=g, dtype=torch.float64)  # colours where sigma = 0 must not matter
    rgb[inside] = torch.tensor(SLAB_RGB, dtype=torch.float64)
    fn = ctx.fn("volume_render")
    black, problem = _render_outputs(fn(sigma, rgb, depths, False), (n_rays,), 41)
    if problem:
        return {"problem": problem}
    white, problem = _render_outputs(fn(sigma, rgb, depths, True), (n_rays,), 41)
    if problem:
        return {"problem": problem}
    return {"opacity": black["opacity"], "color": black["color"], "depth": black["depth"],
            "color_white": white["color"], "depths": depths[0]}


def judge_slab(student, reference, ctx):
    sig = np.array(SLAB_SIGMAS)
    opacity = 1 - np.exp(-sig * 1.0)
    t = 1.0 + 0.1 * np.arange(10)
    trans = np.exp(-sig[:, None] * (t - 1.0))  # (rays, 10)
    depth = (trans * (1 - np.exp(-sig[:, None] * 0.1)) * t).sum(1)
    got = as_array(student["opacity"], "opacity")
    if not np.allclose(got, opacity, atol=1e-6):
        hint = " (sigma used as alpha?)" if got[1] > 0.99 else ""
        return Verdict(False, f"volume_render: a homogeneous slab of density sigma and thickness L = 1 must have "
                              f"opacity 1 - exp(-sigma L) = {np.round(opacity, 5).tolist()} for sigma = "
                              f"{list(SLAB_SIGMAS)}; got {np.round(got, 5).tolist()}{hint}. Check delta, alpha and the "
                              "EXCLUSIVE transmittance T_i = prod_(j<i) (1 - alpha_j).")
    color = opacity[:, None] * np.array(SLAB_RGB)
    if not np.allclose(as_array(student["color"], "color"), color, atol=1e-6):
        return Verdict(False, "volume_render: the slab has one colour c, so the rendered colour must be c * opacity on "
                              f"black; got {np.round(as_array(student['color'], 'color'), 4).tolist()}, expected "
                              f"{np.round(color, 4).tolist()}")
    if not np.allclose(as_array(student["color_white"], "color"), color + (1 - opacity)[:, None], atol=1e-6):
        return Verdict(False, "volume_render(white_background=True): add (1 - opacity) to every channel "
                              "(the empty ray, sigma = 0, must render white)")
    if not np.allclose(as_array(student["depth"], "depth"), depth, atol=1e-6):
        return Verdict(False, f"volume_render: depth must be sum_i w_i t_i; for the slab expected "
                              f"{np.round(depth, 5).tolist()}, got {np.round(as_array(student['depth'], 'depth'), 5).tolist()}")
    return Verdict(True, "volume_render: the homogeneous slab renders opacity 1 - exp(-sigma L), its colour and depth")


def probe_hand(ctx):
    torch = _torch()
    depths = torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [1.0, 1.5, 3.0]], dtype=torch.float64)
    sigma = torch.tensor([[0.5, 1.0, 2.0], [0.0, 0.0, 0.3], [1e6, 1.0, 1.0]], dtype=torch.float64)
    rgb = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    rgb = rgb[None].expand(3, 3, 3).contiguous()  # sample i has colour e_i
    out, problem = _render_outputs(ctx.fn("volume_render")(sigma, rgb, depths, False), (3,), 3)
    return {"problem": problem} if problem else {"weights": out["weights"], "color": out["color"]}


def judge_hand(student, reference, ctx):
    e = math.exp
    want = np.array([[1 - e(-0.5), e(-0.5) * (1 - e(-2.0)), e(-2.5)], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    got = as_array(student["weights"], "weights")
    if np.allclose(got, want, atol=1e-6):
        return Verdict(True, "volume_render: weights of the hand-computed rays are right")
    hints = []
    if abs(got[1, 2] - 1) > 1e-3:
        hints.append("a ray whose only density is at its LAST sample must end there: the last delta is "
                     "LAST_DELTA (1e10), not 0")
    alpha = 1 - np.exp(-np.array([0.5, 2.0, 2e10]))
    if np.allclose(got[0], alpha * np.cumprod(1 - alpha), atol=1e-6):
        hints.append("the transmittance includes the sample itself: T_i must be the EXCLUSIVE product over j < i")
    if abs(got[0, 0] - 0.5) < 1e-6:
        hints.append("sigma seems to be used as alpha: alpha_i = 1 - exp(-sigma_i delta_i)")
    hint = (" Likely: " + "; ".join(hints) + ".") if hints else ""
    return Verdict(False, f"volume_render: weights for depths [1, 2, 4] and sigma [0.5, 1, 2] should be "
                          f"{np.round(want[0], 5).tolist()}, got {np.round(got[0], 5).tolist()} (all three rays: "
                          f"expected {np.round(want, 4).tolist()}, got {np.round(got, 4).tolist()}).{hint}")


def _random_render_inputs(g, batch_shape=(3, 5), n=16):
    torch = _torch()
    sigma = torch.exp(1.5 * torch.randn(batch_shape + (n,), generator=g, dtype=torch.float64))
    sigma = sigma * (torch.rand(batch_shape + (n,), generator=g, dtype=torch.float64) > 0.3)
    rgb = torch.rand(batch_shape + (n, 3), generator=g, dtype=torch.float64)
    return sigma, rgb, _sorted_depths(g, batch_shape, n)


def probe_weights(ctx):
    sigma, rgb, depths = _random_render_inputs(ctx.generator(), (4, 6), 24)
    out, problem = _render_outputs(ctx.fn("volume_render")(sigma, rgb, depths, False), (4, 6), 24)
    return {"problem": problem} if problem else {k: out[k] for k in ("weights", "opacity", "color")}


def judge_weights(student, reference, ctx):
    w, op = as_array(student["weights"], "weights"), as_array(student["opacity"], "opacity")
    if w.min() < -1e-7:
        return Verdict(False, f"volume_render: weights must be >= 0, got a minimum of {w.min():.3g}")
    if w.sum(-1).max() > 1 + 1e-6:
        return Verdict(False, f"volume_render: weights along a ray must sum to at most 1 (they are the probability "
                              f"that the ray ends at each sample), got sums up to {w.sum(-1).max():.5g}")
    if not np.allclose(op, w.sum(-1), atol=1e-6):
        return Verdict(False, "volume_render: opacity must be the sum of the weights along the ray")
    color = as_array(student["color"], "color")
    if color.min() < -1e-6 or color.max() > 1 + 1e-6:
        return Verdict(False, f"volume_render: colours in [0, 1] on black must render in [0, 1], got {describe(color)}")
    return Verdict(True, "volume_render: weights >= 0, sum <= 1, opacity = sum of weights")


def probe_render_reference(ctx):
    torch = _torch()
    sigma, rgb, depths = _random_render_inputs(ctx.generator())
    fn = ctx.fn("volume_render")
    result = {}
    for white in (False, True):
        out, problem = _render_outputs(fn(sigma.float(), rgb.float(), depths.float(), white), (3, 5), 16)
        if problem:
            return {"problem": problem}
        result.update({f"{k}_{int(white)}": v for k, v in out.items()})
    del torch
    return result


def judge_render_reference(student, reference, ctx):
    checks = [expect_close(student, reference, f"{k}_{w}", f"volume_render {k} (white_background={bool(w)})",
                           1e-4, 1e-5) for w in (0, 1) for k in ("color", "depth", "weights", "opacity")]
    return all_of(*checks)


def probe_gradcheck(ctx):
    torch = _torch()
    g = ctx.generator()
    sigma = (0.1 + 2 * torch.rand(2, 5, generator=g, dtype=torch.float64)).requires_grad_(True)
    rgb = torch.rand(2, 5, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    depths = _sorted_depths(g, (2,), 5, 1.0, 3.0)
    fn = ctx.fn("volume_render")

    def outputs(s, c):
        out = fn(s, c, depths, True)
        return tuple(out[i] for i in range(4))

    ok = torch.autograd.gradcheck(outputs, (sigma, rgb), eps=1e-6, atol=1e-5, rtol=1e-4, raise_exception=False)
    return {"ok": bool(ok)}


def judge_gradcheck(student, reference, ctx):
    if student["ok"]:
        return Verdict(True, "volume_render: analytic gradients w.r.t. sigma and rgb match finite differences")
    return Verdict(False, "volume_render: torch.autograd.gradcheck failed (float64): the gradients w.r.t. sigma or rgb "
                          "disagree with finite differences; avoid in-place edits of tensors that need gradients, "
                          ".detach(), .item() or numpy inside the function")


def probe_grad_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    sigma, rgb, depths = _random_render_inputs(g)
    sigma[..., -1] += 0.5  # with sigma = 0 at the last sample, d/dsigma carries LAST_DELTA = 1e10: meaningless
    coefs = [torch.randn(shape, generator=g, dtype=torch.float64) for shape in ((3, 5, 3), (3, 5), (3, 5, 16), (3, 5))]
    sigma, rgb = sigma.requires_grad_(True), rgb.requires_grad_(True)  # float64: formulas agree to 1e-10
    out, problem = _render_outputs(ctx.fn("volume_render")(sigma, rgb, depths, False), (3, 5), 16)
    if problem:
        return {"problem": problem}
    loss = sum((o * c).sum() for o, c in zip((out["color"], out["depth"], out["weights"], out["opacity"]), coefs))
    grad_sigma, grad_rgb = torch.autograd.grad(loss, (sigma, rgb), allow_unused=True)
    if grad_sigma is None or grad_rgb is None:
        return {"problem": "volume_render: the outputs do not depend (differentiably) on "
                           f"{'sigma' if grad_sigma is None else 'rgb'}: was something detached?"}
    return {"grad_sigma": grad_sigma, "grad_rgb": grad_rgb}


def judge_grad_reference(student, reference, ctx):
    return all_of(expect_close(student, reference, "grad_sigma", "d(outputs)/d(sigma)", 1e-3, 1e-4),
                  expect_close(student, reference, "grad_rgb", "d(outputs)/d(rgb)", 1e-3, 1e-4))


def probe_robust(ctx):
    torch = _torch()
    g = ctx.generator()
    levels = torch.tensor([0.0, 1e-3, 1.0, 50.0, 1e4, 1e6])
    sigma = levels[torch.randint(0, 6, (8, 32), generator=g)]
    sigma[0] = 0.0
    sigma[1] = 1e6
    sigma = sigma.requires_grad_(True)
    rgb = torch.rand(8, 32, 3, generator=g).requires_grad_(True)
    depths = _sorted_depths(g, (8,), 32, 0.5, 3.0, torch.float32)
    out, problem = _render_outputs(ctx.fn("volume_render")(sigma, rgb, depths, True), (8,), 32)
    if problem:
        return {"problem": problem}
    (out["color"].sum() + out["depth"].sum()).backward()
    grads = [t.grad if t.grad is not None else torch.zeros(1) for t in (sigma, rgb)]
    return {"weights": out["weights"], "finite": all(bool(torch.isfinite(v).all()) for v in out.values()),
            "grad_finite": all(bool(torch.isfinite(gr).all()) for gr in grads)}


def judge_robust(student, reference, ctx):
    w = as_array(student["weights"], "weights")
    if not student["finite"]:
        return Verdict(False, "volume_render: densities up to 1e6 (float32) gave NaN/inf outputs; compute alpha as "
                              "1 - exp(-sigma * delta) and the transmittance as a product of (1 - alpha), or as "
                              "exp(-exclusive cumsum of sigma * delta)")
    if not student["grad_finite"]:
        return Verdict(False, "volume_render: gradients are NaN/inf for densities up to 1e6; avoid dividing by "
                              "(1 - alpha) or taking log(1 - alpha)")
    if np.abs(w[0]).max() > 1e-6:
        return Verdict(False, "volume_render: a ray with zero density everywhere must get zero weights")
    if w.sum(-1).max() > 1 + 1e-4 or w.min() < -1e-6:
        return Verdict(False, f"volume_render: with densities up to 1e6 the weight sums reach {w.sum(-1).max():.6g} "
                              f"(minimum weight {w.min():.3g}); in float32, exp(-(cumsum - sigma * delta)) loses "
                              "everything next to the 1e10 last delta: use an EXCLUSIVE cumulative sum or product")
    return Verdict(True, "volume_render: finite values and gradients for sigma in [0, 1e6]")


def _render_device(ctx, torch):
    sigma, rgb, depths = _random_render_inputs(ctx.generator(), (2,), 6)
    return ctx.fn("volume_render")(sigma.to(ctx.device), rgb.to(ctx.device), depths.to(ctx.device), True)


# ----------------------------------------------------------------------------- sample_pdf
def _pdf_inputs(g, rays=4, bins=8):
    torch = _torch()
    edges = torch.cumsum(0.2 + torch.rand(rays, bins + 1, generator=g, dtype=torch.float64), -1)
    weights = torch.rand(rays, bins, generator=g, dtype=torch.float64) ** 2
    weights[0, 2:5] = 0.0  # empty bins
    return edges, weights


def _pdf_cdf_at(bins, weights, x):
    """The piecewise-linear CDF of each ray (rows) evaluated at x (rows)."""
    pdf = (weights + PDF_EPS) / (weights + PDF_EPS).sum(-1, keepdims=True)
    cdf = np.concatenate([np.zeros((pdf.shape[0], 1)), np.cumsum(pdf, -1)], -1)
    return np.stack([np.interp(x[i], bins[i], cdf[i]) for i in range(bins.shape[0])])


def probe_pdf_quantiles(ctx):
    bins, weights = _pdf_inputs(ctx.generator())
    out = ctx.fn("sample_pdf")(bins, weights, 64, True, ctx.generator(1))
    problem = tensor_problem(out, (4, 64), "sample_pdf(..., n_samples=64)")
    return {"problem": problem} if problem else {"bins": bins, "weights": weights, "samples": out}


def judge_pdf_quantiles(student, reference, ctx):
    bins, weights = as_array(student["bins"], "bins"), as_array(student["weights"], "weights")
    x = as_array(student["samples"], "samples")
    if x.min() < bins[:, :1].min() - 1e-6 or np.any(x < bins[:, :1] - 1e-6) or np.any(x > bins[:, -1:] + 1e-6):
        return Verdict(False, "sample_pdf: samples must lie inside [bins[..., 0], bins[..., -1]]")
    if np.any(np.diff(x, axis=-1) < -1e-9):
        return Verdict(False, "sample_pdf(deterministic=True): samples of increasing quantiles must be sorted")
    got = _pdf_cdf_at(bins, weights, x)
    want = (np.arange(64) + 0.5) / 64
    err = np.abs(got - want).max()
    if err > 2e-4:
        return Verdict(False, f"sample_pdf(deterministic=True): the CDF at the k-th sample should be (k + 0.5) / N; "
                              f"max error {err:.3g} (first ray: CDF at samples {np.round(got[0, :4], 4).tolist()}..., "
                              f"expected {np.round(want[:4], 4).tolist()}...). Check the CDF (starts at 0, normalised), "
                              "the bin search and the linear interpolation inside the bin.")
    return Verdict(True, "sample_pdf: deterministic samples are the (k + 0.5) / N quantiles of the piecewise-linear CDF")


def probe_pdf_ks(ctx):
    bins, weights = _pdf_inputs(ctx.generator(), rays=3, bins=6)
    out = ctx.fn("sample_pdf")(bins, weights, 4000, False, ctx.generator(1))
    problem = tensor_problem(out, (3, 4000), "sample_pdf(..., n_samples=4000)")
    return {"problem": problem} if problem else {"bins": bins, "weights": weights, "samples": out}


def judge_pdf_ks(student, reference, ctx):
    bins, weights = as_array(student["bins"], "bins"), as_array(student["weights"], "weights")
    x = as_array(student["samples"], "samples")
    cdf = np.sort(_pdf_cdf_at(bins, weights, x), axis=-1)
    n = x.shape[-1]
    stats = [max((np.arange(1, n + 1) / n - c).max(), (c - np.arange(n) / n).max()) for c in cdf]
    worst = max(stats)
    if worst * math.sqrt(n) > KS_CRITICAL:
        return Verdict(False, f"sample_pdf: 4000 random samples do not follow the piecewise-constant density of the "
                              f"weights (Kolmogorov-Smirnov statistic {worst:.3g}, allowed {KS_CRITICAL / math.sqrt(n):.3g}). "
                              "Invert the CDF with linear interpolation inside each bin.")
    return Verdict(True, f"sample_pdf: random samples pass a KS test against the CDF (D = {worst:.3g})")


def probe_pdf_deterministic(ctx):
    torch = _torch()
    bins, weights = _pdf_inputs(ctx.generator())
    fn = ctx.fn("sample_pdf")
    d1, d2 = fn(bins, weights, 16, True, ctx.generator(1)), fn(bins, weights, 16, True, ctx.generator(2))
    r1, r2 = fn(bins, weights, 16, False, ctx.generator(1)), fn(bins, weights, 16, False, ctx.generator(1))
    r3 = fn(bins, weights, 16, False, ctx.generator(2))
    return {"det_same": bool(torch.equal(d1, d2)), "rand_same": bool(torch.equal(r1, r2)),
            "rand_differ": not bool(torch.equal(r1, r3))}


def judge_pdf_deterministic(student, reference, ctx):
    if not student["det_same"]:
        return Verdict(False, "sample_pdf(deterministic=True) must not depend on the generator: use u_k = (k + 0.5) / N")
    if not student["rand_same"]:
        return Verdict(False, "sample_pdf(deterministic=False): the same generator seed gave different samples; draw "
                              "the uniforms with torch.rand(..., generator=generator)")
    if not student["rand_differ"]:
        return Verdict(False, "sample_pdf(deterministic=False): different generator seeds gave the same samples")
    return Verdict(True, "sample_pdf: deterministic when asked, reproducible from its generator otherwise")


def probe_pdf_no_grad(ctx):
    bins, weights = _pdf_inputs(ctx.generator())
    bins, weights = bins.requires_grad_(True), weights.requires_grad_(True)
    out = ctx.fn("sample_pdf")(bins, weights, 8, False, ctx.generator(1))
    return {"requires_grad": bool(getattr(out, "requires_grad", True))}


def judge_pdf_no_grad(student, reference, ctx):
    if student["requires_grad"]:
        return Verdict(False, "sample_pdf: the samples carry a gradient back to bins/weights; detach both first "
                              "(the fine depths are positions to evaluate, not something to optimise)")
    return Verdict(True, "sample_pdf: samples are detached from bins and weights")


def probe_pdf_reference(ctx):
    bins, weights = _pdf_inputs(ctx.generator(), rays=6, bins=10)
    fn = ctx.fn("sample_pdf")
    samples = fn(bins.float(), weights.float(), 12, True, ctx.generator(1))
    batched = fn(bins[:2, None].float().expand(2, 3, 11), weights[:2, None].float().expand(2, 3, 10), 5, True, None)
    return {"samples": samples, "shape": list(getattr(batched, "shape", []))}


def judge_pdf_reference(student, reference, ctx):
    if list(student["shape"]) != list(reference["shape"]):
        return Verdict(False, f"sample_pdf: bins (2, 3, 11), weights (2, 3, 10), N = 5 should give shape "
                              f"{reference['shape']}, got {student['shape']}")
    return expect_close(student, reference, "samples", "sample_pdf samples (deterministic)", 1e-4, 1e-4)


def _pdf_device(ctx, torch):
    bins, weights = _pdf_inputs(ctx.generator())
    return ctx.fn("sample_pdf")(bins.to(ctx.device), weights.to(ctx.device), 8, False, ctx.generator(1))


# ----------------------------------------------------------------------------- hierarchical_depths
def probe_hier(ctx):
    torch = _torch()
    g = ctx.generator()
    depths = _sorted_depths(g, (3,), 16)
    weights = torch.rand(3, 16, generator=g, dtype=torch.float64) * 1e-3
    weights[:, 7] = 1.0  # nearly all the mass in one sample (99%: the check asks for 90% of the samples)
    out = ctx.fn("hierarchical_depths")(depths, weights, 32, False, ctx.generator(1))
    if not torch.is_tensor(out):
        return {"problem": f"hierarchical_depths should return a tensor, got {type(out).__name__}"}
    if tuple(out.shape) != (3, 48):
        hint = " (only the fine samples? merge them with the coarse depths)" if out.shape[-1] == 32 else ""
        return {"problem": f"hierarchical_depths: S = 16 coarse depths and 32 fine samples should give (3, 48), got "
                           f"{tuple(out.shape)}{hint}"}
    return {"coarse": depths, "out": out, "requires_grad": bool(out.requires_grad)}


def judge_hier(student, reference, ctx):
    coarse, out = as_array(student["coarse"], "coarse"), as_array(student["out"], "depths")
    if np.any(np.diff(out, axis=-1) < -1e-9):
        return Verdict(False, "hierarchical_depths: the merged depths must be sorted along the ray (torch.sort after "
                              "torch.cat); the renderer assumes increasing depths")
    for ray in range(coarse.shape[0]):
        found = np.abs(out[ray][None, :] - coarse[ray][:, None]).min(1)
        if found.max() > 1e-9:
            return Verdict(False, "hierarchical_depths: every coarse depth must still be in the output (merge coarse "
                                  "and fine, do not replace)")
    mids = 0.5 * (coarse[:, 1:] + coarse[:, :-1])
    fine = np.sort(np.stack([np.setdiff1d(out[r], coarse[r]) if len(np.setdiff1d(out[r], coarse[r])) == 32
                             else np.full(32, np.nan) for r in range(coarse.shape[0])]), -1)
    inside = ((fine >= mids[:, 6:7] - 1e-9) & (fine <= mids[:, 7:8] + 1e-9)).mean()
    if not inside >= 0.9:
        return Verdict(False, f"hierarchical_depths: with (nearly) all weight on coarse sample 7, the fine samples must "
                              f"fall between the midpoints around it; only {100 * np.nan_to_num(inside):.0f}% do. Use "
                              "bins = midpoints of the coarse depths and weights[..., 1:-1].")
    if student["requires_grad"]:
        return Verdict(False, "hierarchical_depths: the depths must not carry gradients")
    return Verdict(True, "hierarchical_depths: sorted, keeps the coarse depths, fine samples where the weight is")


def probe_hier_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    depths = _sorted_depths(g, (2, 3), 12, dtype=torch.float32)
    weights = torch.rand(2, 3, 12, generator=g)
    return {"depths": ctx.fn("hierarchical_depths")(depths, weights, 10, True, ctx.generator(1))}


def _hier_device(ctx, torch):
    g = ctx.generator()
    depths, weights = _sorted_depths(g, (2,), 8).to(ctx.device), torch.rand(2, 8, generator=g, dtype=torch.float64)
    return ctx.fn("hierarchical_depths")(depths, weights.to(ctx.device), 4, False, ctx.generator(1))


# ----------------------------------------------------------------------------- FiLMSiren
def _linear_of(layer, label):
    torch = _torch()
    linear = getattr(layer, "layer", None)
    if not isinstance(linear, torch.nn.Linear):
        return None, f"{label} must keep its nn.Linear in `self.layer` (the docstring's contract)"
    return linear, None


def probe_film_forward(ctx):
    torch = _torch()
    g = ctx.generator()
    layer = ctx.fn("FiLMSiren")(5, 7, is_first=False).double()
    linear, problem = _linear_of(layer, "FiLMSiren")
    if problem:
        return {"problem": problem}
    with torch.no_grad():
        linear.weight.copy_(0.5 * torch.randn(7, 5, generator=g, dtype=torch.float64))
        linear.bias.copy_(0.3 * torch.randn(7, generator=g, dtype=torch.float64))
    x = torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
    freq = 30 + 5 * torch.randn(2, 7, generator=g, dtype=torch.float64)
    phase = torch.randn(2, 7, generator=g, dtype=torch.float64)
    out = layer(x, freq, phase)
    problem = tensor_problem(out, (2, 4, 7), "FiLMSiren output for x (2, 4, 5), freq/phase (2, 7)")
    if problem:
        return {"problem": problem}
    want = torch.sin(freq[:, None] * (x @ linear.weight.T + linear.bias) + phase[:, None])
    return {"out": out, "want": want}


def judge_film_forward(student, reference, ctx):
    got, want = as_array(student["out"], "output"), as_array(student["want"], "expected")
    if np.allclose(got, want, atol=1e-8):
        return Verdict(True, "FiLMSiren: computes sin(freq * (W x + b) + phase)")
    return Verdict(False, f"FiLMSiren: expected sin(freq * (W x + b) + phase) (freq and phase per object, broadcast "
                          f"over the N points); max error {np.abs(got - want).max():.3g}. The frequency multiplies the "
                          "whole linear output, the phase is added after, inside the sine.")


INIT_CASES = ((256, 256, False, 25.0), (256, 256, False, 30.0), (3, 4096, True, 25.0))


def probe_film_init(ctx):
    torch = _torch()
    torch.manual_seed(ctx.seed)
    stats = []
    for n_in, n_out, first, w0 in INIT_CASES:
        layer = ctx.fn("FiLMSiren")(n_in, n_out, is_first=first, w0=w0)
        linear, problem = _linear_of(layer, "FiLMSiren")
        if problem:
            return {"problem": problem}
        w = linear.weight.detach().double()
        stats.append([float(w.abs().max()), float(w.std()), float(w.mean())])
    return {"stats": stats}


def judge_film_init(student, reference, ctx):
    stats = np.asarray(student["stats"], dtype=np.float64)
    for (n_in, _, first, w0), (wmax, std, mean) in zip(INIT_CASES, stats):
        bound = 1 / n_in if first else math.sqrt(6 / n_in) / w0
        label = (f"the first layer (n_in = {n_in}): U(-1/n_in, 1/n_in)" if first else
                 f"a hidden layer (n_in = {n_in}, w0 = {w0:g}): U(-sqrt(6/n_in)/w0, sqrt(6/n_in)/w0)")
        if wmax > bound * 1.001 or wmax < bound * 0.95 or abs(std / (bound / math.sqrt(3)) - 1) > 0.05:
            return Verdict(False, f"FiLMSiren init: {label} has bound {bound:.4g}; your weights reach {wmax:.4g} with "
                                  f"std {std:.4g} (uniform would give std {bound / math.sqrt(3):.4g}), "
                                  f"{wmax / bound:.3g}x the bound. Re-initialise self.layer.weight in __init__.")
    return Verdict(True, "FiLMSiren: SIREN initialisation of first and hidden layers")


def probe_film_gradcheck(ctx):
    torch = _torch()
    g = ctx.generator()
    layer = ctx.fn("FiLMSiren")(3, 4, is_first=True).double()
    x = torch.randn(2, 3, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    freq = (1 + torch.rand(2, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    phase = torch.randn(2, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    ok = torch.autograd.gradcheck(layer, (x, freq, phase), eps=1e-6, atol=1e-5, raise_exception=False)
    return {"ok": bool(ok)}


def judge_film_gradcheck(student, reference, ctx):
    if student["ok"]:
        return Verdict(True, "FiLMSiren: gradients w.r.t. x, freq and phase pass gradcheck")
    return Verdict(False, "FiLMSiren: torch.autograd.gradcheck failed for the gradients w.r.t. x, freq or phase "
                          "(float64); no in-place edits, .detach() or numpy in forward")


def probe_film_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    layer = ctx.fn("FiLMSiren")(6, 5, is_first=True)
    linear, problem = _linear_of(layer, "FiLMSiren")
    if problem:
        return {"problem": problem}
    with torch.no_grad():
        linear.weight.copy_(torch.randn(5, 6, generator=g) / 6)
        linear.bias.copy_(torch.randn(5, generator=g) * 0.1)
    x = torch.rand(3, 10, 6, generator=g) * 2 - 1
    freq, phase = 30 + 10 * torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    return {"out": layer(x, freq, phase)}


def _film_device(ctx, torch):
    layer = ctx.fn("FiLMSiren")(3, 8, is_first=True).to(device=ctx.device, dtype=torch.float64)
    x = torch.rand(2, 5, 3, dtype=torch.float64, device=ctx.device)
    return layer(x, torch.full((2, 8), 30.0, dtype=torch.float64, device=ctx.device),
                 torch.zeros(2, 8, dtype=torch.float64, device=ctx.device))


def _fit_scene_rays():
    """The analytic scene's training and evaluation rays (the same in the child and the parent)."""
    torch = _torch()
    from gen3d import hw_pigan as hw

    g = torch.Generator().manual_seed(FIT_SEED)
    return hw.analytic_scene_rays(8192, g), hw.analytic_scene_rays(2048, g)


def probe_fit_scene(ctx):
    """Fit the analytic scene with the student's renderer + SIREN; return the rendered evaluation colours
    (the judge measures PSNR against the scene in the parent)."""
    torch = _torch()
    from gen3d import hw_pigan as hw

    renderer = hw.Renderer(None, ctx.fn("stratified_depths"), ctx.fn("volume_render"))
    train, evaluation = _fit_scene_rays()
    cfg = hw.FitConfig(steps=150, rays_per_step=512, n_samples=24, hidden=48, n_siren=3, mapping_hidden=48,
                       near=1.8, far=4.2, eval_every=50, seed=FIT_SEED)  # the scene's rays start at radius 3
    torch.manual_seed(FIT_SEED)
    field = hw.SirenField(ctx.fn("FiLMSiren"), ctx.fn("MappingNetwork"), cfg.z_dim, cfg.hidden, cfg.n_siren,
                          cfg.mapping_hidden).to(ctx.device)
    history = hw.fit_scene(field, renderer, train, evaluation, cfg)
    with torch.no_grad():
        colors = hw.render_flat(field, renderer, history["latent"], evaluation, cfg, ctx.device)
    return {"colors": colors, "seconds": history["seconds"], "psnr_curve": history["psnr"],
            "curve_steps": history["step"]}


FIT_MARGIN_DB = 1.0


def _fit_psnr(output, label: str) -> float:
    """PSNR (dB) of a probe's evaluation colours against the analytic scene, computed here."""
    target = _fit_scene_rays()[1][2].numpy()  # (2048, 3)
    colors = as_array(output.get("colors"), f"{label} rendered colours").astype(np.float64)
    if colors.shape != target.shape:
        raise ValueError(f"{label} rendered colours: expected shape {target.shape}, got {colors.shape}")
    if not np.isfinite(colors).all():
        raise ValueError(f"{label} rendered colours contain NaN/inf")
    mse = float(np.mean((colors - target) ** 2))
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def judge_fit_scene(student, reference, ctx):
    try:
        got, want = _fit_psnr(student, "your"), _fit_psnr(reference, "the reference's")
    except ValueError as err:
        return Verdict(False, f"fit_scene with your renderer + SIREN: {err}")
    if got >= want - FIT_MARGIN_DB:
        return Verdict(True, f"fitting the analytic scene with your renderer + SIREN reached {got:.2f} dB "
                             f"(reference {want:.2f} dB on the same budget; measured by the grader)")
    return Verdict(False, f"fitting the analytic scene (150 steps) with your stratified_depths + volume_render + "
                          f"FiLMSiren + MappingNetwork reached {got:.2f} dB PSNR, the reference {want:.2f} dB "
                          f"(allowed margin {FIT_MARGIN_DB} dB). Suspect the SIREN initialisation or the FiLM "
                          "frequencies.", fraction=max(0.0, min(1.0, 1 - (want - FIT_MARGIN_DB - got) / 5)))


def figure_fit_scene(student, reference, ctx) -> list:
    """Evaluation PSNR over the fit, the submission's against the reference's (curves as each side reported
    them; the score uses the grader's own PSNR of the final colours)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    for label, data in (("yours", student), ("reference", reference)):
        if data is not None and data.get("psnr_curve"):
            ax.plot(data.get("curve_steps"), data["psnr_curve"], marker="o", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("eval PSNR (dB)")
    ax.legend()
    ax.grid(alpha=0.3)
    return [("fitting the analytic scene: evaluation PSNR", fig)]


# ----------------------------------------------------------------------------- MappingNetwork
def _linears(net):
    torch = _torch()
    return [m for m in net.modules() if isinstance(m, torch.nn.Linear)]


def probe_mapping_forward(ctx):
    torch = _torch()
    g = ctx.generator()
    net = ctx.fn("MappingNetwork")(6, 16, 3, 8).double()
    linears = _linears(net)
    shapes = [tuple(m.weight.shape) for m in linears]
    if shapes != [(16, 6), (16, 16), (16, 16), (48, 16)]:
        return {"problem": f"MappingNetwork(6, 16, n_layers=3, film_dim=8) should hold Linear layers of weight shapes "
                           f"[(16, 6), (16, 16), (16, 16), (48, 16)] in self.network, found {shapes}"}
    with torch.no_grad():
        for m in linears:
            m.weight.copy_(0.4 * torch.randn(m.weight.shape, generator=g, dtype=torch.float64))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g, dtype=torch.float64))
    z = torch.randn(5, 6, generator=g, dtype=torch.float64)
    out = net(z)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return {"problem": "MappingNetwork.forward should return (frequencies, phase_shifts)"}
    problem = tensor_problem(out[0], (5, 3, 8), "frequencies") or tensor_problem(out[1], (5, 3, 8), "phase_shifts")
    if problem:
        return {"problem": problem}
    h = z
    for m in linears[:-1]:
        h = torch.nn.functional.leaky_relu(m(h), 0.2)
    h = linears[-1](h)  # (5, 48)
    return {"freq": out[0], "phase": out[1], "want_freq": 15 * h[:, :24].reshape(5, 3, 8) + 30,
            "want_phase": h[:, 24:].reshape(5, 3, 8)}


def judge_mapping_forward(student, reference, ctx):
    freq, want_f = as_array(student["freq"], "frequencies"), as_array(student["want_freq"], "expected")
    phase, want_p = as_array(student["phase"], "phase_shifts"), as_array(student["want_phase"], "expected")
    if not np.allclose(phase, want_p, atol=1e-8):
        return Verdict(False, "MappingNetwork: phase shifts should be the second half of the MLP output (LeakyReLU 0.2 "
                              f"between the Linear layers), reshaped to (B, L, film_dim); max error {np.abs(phase - want_p).max():.3g}")
    if not np.allclose(freq, want_f, atol=1e-8):
        hint = " (frequencies = 15 f + 30, f the first half of the output)"
        return Verdict(False, f"MappingNetwork: frequencies differ from 15 * f + 30; max error "
                              f"{np.abs(freq - want_f).max():.3g}{hint}")
    return Verdict(True, "MappingNetwork: MLP with LeakyReLU(0.2), frequencies 15 f + 30 and phase shifts")


def probe_mapping_init(ctx):
    torch = _torch()
    torch.manual_seed(ctx.seed)
    net = ctx.fn("MappingNetwork")(128, 256, 4, 64)
    stds = [float(m.weight.detach().double().std()) for m in _linears(net)]
    fans = [m.weight.shape[1] for m in _linears(net)]
    freq, _ = net(torch.randn(64, 128))
    return {"stds": stds, "fans": fans, "freq_mean": float(freq.detach().mean())}


def judge_mapping_init(student, reference, ctx):
    gain = math.sqrt(2 / (1 + 0.2 ** 2))
    stds, fans = student["stds"], student["fans"]
    if len(stds) != 4:
        return Verdict(False, f"MappingNetwork: expected 4 Linear layers, found {len(stds)}")
    for i, (std, fan) in enumerate(zip(stds, fans)):
        want = gain / math.sqrt(fan) * (0.25 if i == 3 else 1.0)
        if abs(std / want - 1) > 0.1:
            extra = " (the last layer is scaled by 0.25 after kaiming_normal_)" if i == 3 else ""
            return Verdict(False, f"MappingNetwork init: Linear layer {i} has weight std {std:.4g}, kaiming_normal_(a=0.2, "
                                  f"fan_in) gives {want:.4g}{extra}")
    if abs(student["freq_mean"] - 30) > 5:
        return Verdict(False, f"MappingNetwork: frequencies at initialisation average {student['freq_mean']:.3g}; "
                              "they should start near 30 (15 f + 30 with small f)")
    return Verdict(True, "MappingNetwork: kaiming init, last layer x0.25, frequencies near 30")


def probe_mapping_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    net = ctx.fn("MappingNetwork")(8, 12, 2, 5)
    with torch.no_grad():
        for m in _linears(net):
            m.weight.copy_(0.3 * torch.randn(m.weight.shape, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    freq, phase = net(torch.randn(4, 8, generator=g))
    return {"freq": freq, "phase": phase}


def _mapping_device(ctx, torch):
    net = ctx.fn("MappingNetwork")(8, 16, 2, 4).to(device=ctx.device, dtype=torch.float64)
    return net(torch.randn(3, 8, dtype=torch.float64, device=ctx.device))


# ----------------------------------------------------------------------------- look_at_origin
def probe_look_at(ctx):
    torch = _torch()
    g = ctx.generator()
    az = torch.cat([torch.tensor([0.0, math.pi / 2]), 2 * math.pi * torch.rand(6, generator=g, dtype=torch.float64)])
    el = torch.cat([torch.tensor([0.0, 0.0]), 2.6 * torch.rand(6, generator=g, dtype=torch.float64) - 1.3])
    c2w = ctx.fn("look_at_origin")(az.double(), el.double(), 2.5)
    problem = tensor_problem(c2w, (8, 4, 4), "look_at_origin for 8 angles")
    return {"problem": problem} if problem else {"c2w": c2w, "az": az, "el": el}


def judge_look_at(student, reference, ctx):
    c2w, az, el = (as_array(student[k], k) for k in ("c2w", "az", "el"))
    rot, centre = c2w[:, :3, :3], c2w[:, :3, 3]
    want_centre = 2.5 * np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], -1)
    if not np.allclose(centre, want_centre, atol=1e-6):
        return Verdict(False, "look_at_origin: the camera centre c2w[:3, 3] must be radius * (cos(el) sin(az), sin(el), "
                              f"cos(el) cos(az)); azimuth 0 is on +z, pi/2 on +x. Got {np.round(centre[1], 4).tolist()} "
                              f"for azimuth pi/2, elevation 0 (expected [2.5, 0, 0])")
    if not np.allclose(np.einsum("bji,bjk->bik", rot, rot), np.eye(3), atol=1e-6):
        return Verdict(False, "look_at_origin: the columns of c2w[:3, :3] must be orthonormal camera axes")
    if not np.allclose(np.linalg.det(rot), 1, atol=1e-6):
        return Verdict(False, "look_at_origin: the rotation has determinant -1 (a mirror): x = cross(up, z), y = cross(z, x)")
    if not np.allclose(rot[:, :, 2], want_centre / 2.5, atol=1e-6):
        return Verdict(False, "look_at_origin: the camera's -z axis must point at the origin, so its +z column is "
                              "centre / |centre|")
    if np.abs(rot[:, 1, 0]).max() > 1e-6 or rot[:, 1, 1].min() < -1e-9:
        return Verdict(False, "look_at_origin: the camera must not roll: its x axis is horizontal (world y = 0) and "
                              "its y axis points up (world y >= 0)")
    if not np.allclose(c2w[:, 3], [0, 0, 0, 1]):
        return Verdict(False, "look_at_origin: the last row of c2w must be [0, 0, 0, 1]")
    return Verdict(True, "look_at_origin: centre on the sphere, looking at the origin, +y up, no roll")


def probe_look_at_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    az, el = 6.28 * torch.rand(5, generator=g), 2.4 * torch.rand(5, generator=g) - 1.2
    return {"c2w": ctx.fn("look_at_origin")(az, el, 1.0 + 3 * torch.rand(5, generator=g))}


def _look_at_device(ctx, torch):
    az = torch.rand(3, dtype=torch.float64, device=ctx.device)
    return ctx.fn("look_at_origin")(az, 0.5 * az, 2.0)


# ----------------------------------------------------------------------------- sample_camera_poses
def _angles(torch, c2w):
    centre = c2w[:, :3, 3].double()
    radius = centre.norm(dim=-1)
    return torch.atan2(centre[:, 0], centre[:, 2]), torch.asin(centre[:, 1] / radius), radius


def probe_poses(ctx):
    torch = _torch()
    fn = ctx.fn("sample_camera_poses")
    uni = fn(4000, 2.7, (-1.0, 2.0), (-0.2, 0.6), "uniform", ctx.generator(1), torch.device("cpu"), torch.float64)
    gau = fn(4000, 2.7, (0.3, 0.2), (0.1, 0.15), "gaussian", ctx.generator(2), torch.device("cpu"), torch.float64)
    high = fn(500, 2.7, (0.0, 0.1), (1.4, 0.3), "gaussian", ctx.generator(3), torch.device("cpu"), torch.float64)
    for name, value in (("uniform", uni), ("gaussian", gau), ("gaussian", high)):
        problem = tensor_problem(value, (value.shape[0] if hasattr(value, "shape") else -1, 4, 4), f"{name} poses")
        if problem or value.shape[0] not in (4000, 500):
            return {"problem": problem or f"sample_camera_poses(batch) returned {value.shape[0]} poses"}
    az_u, el_u, r_u = _angles(torch, uni)
    az_g, el_g, _ = _angles(torch, gau)
    _, el_h, _ = _angles(torch, high)
    look = (uni[:, :3, 2] * uni[:, :3, 3]).sum(-1) / r_u  # should be 1: +z axis = centre direction
    return {"az_u": az_u, "el_u": el_u, "radius": r_u, "az_g": az_g, "el_g": el_g, "el_h": el_h, "look": look}


def judge_poses(student, reference, ctx):
    r = as_array(student["radius"], "radius")
    if not np.allclose(r, 2.7, atol=1e-6):
        return Verdict(False, f"sample_camera_poses: cameras must be at distance radius = 2.7, got {describe(r)}")
    if not np.allclose(as_array(student["look"], "look"), 1, atol=1e-6):
        return Verdict(False, "sample_camera_poses: cameras must look at the origin (use look_at_origin)")
    for key, (lo, hi), name in (("az_u", (-1.0, 2.0), "azimuth"), ("el_u", (-0.2, 0.6), "elevation")):
        a = as_array(student[key], key)
        frac = (a - lo) / (hi - lo)
        ks = _ks_uniform(frac)
        if frac.min() < -1e-6 or frac.max() > 1 + 1e-6 or ks * math.sqrt(len(a)) > KS_CRITICAL:
            return Verdict(False, f"sample_camera_poses(uniform): {name} should be U{lo, hi}; got {describe(a)} "
                                  f"(KS statistic {ks:.3g})")
    for key, (mean, std), name in (("az_g", (0.3, 0.2), "azimuth"), ("el_g", (0.1, 0.15), "elevation")):
        a = as_array(student[key], key)
        if abs(a.mean() - mean) > 5 * std / math.sqrt(len(a)) or abs(a.std() / std - 1) > 0.08:
            return Verdict(False, f"sample_camera_poses(gaussian): {name} should be mean + std * N(0, 1) with (mean, std) = "
                                  f"({mean}, {std}); got mean {a.mean():.4g}, std {a.std():.4g}")
    el_h = as_array(student["el_h"], "elevation")
    if el_h.max() > MAX_ELEVATION + 1e-6:
        return Verdict(False, f"sample_camera_poses: elevations must be clamped to +-MAX_ELEVATION (85 degrees), got up "
                              f"to {math.degrees(el_h.max()):.2f} degrees")
    return Verdict(True, "sample_camera_poses: uniform and gaussian pose priors, clamped elevation, looking at the origin")


def probe_poses_generator(ctx):
    torch = _torch()
    fn = ctx.fn("sample_camera_poses")
    args = (6, 3.0, (0.0, 6.0), (0.0, 0.5), "uniform")
    a, b = fn(*args, ctx.generator(1)), fn(*args, ctx.generator(1))
    c = fn(*args, ctx.generator(2))
    return {"same": bool(torch.equal(a, b)), "differ": not bool(torch.equal(a, c)), "dtype": str(a.dtype)}


def judge_poses_generator(student, reference, ctx):
    if not student["same"]:
        return Verdict(False, "sample_camera_poses: the same generator seed gave different cameras; draw with generator=")
    if not student["differ"]:
        return Verdict(False, "sample_camera_poses: different generator seeds gave the same cameras")
    if student["dtype"] != "torch.float32":
        return Verdict(False, f"sample_camera_poses(dtype=torch.float32 by default) returned {student['dtype']}")
    return Verdict(True, "sample_camera_poses: reproducible from its generator")


def probe_poses_reference(ctx):
    torch = _torch()
    fn = ctx.fn("sample_camera_poses")
    uni = fn(7, 2.0, (-3.0, 3.0), (-0.1, 0.7), "uniform", ctx.generator(1), torch.device("cpu"), torch.float32)
    gau = fn(7, 2.0, (0.0, 0.4), (0.2, 0.1), "gaussian", ctx.generator(2), torch.device("cpu"), torch.float32)
    return {"uniform": uni, "gaussian": gau}


def judge_poses_reference(student, reference, ctx):
    hint = "draw all B azimuths first, then all B elevations, from the generator"
    return all_of(expect_close(student, reference, "uniform", "uniform poses", 1e-4, 1e-5, hint),
                  expect_close(student, reference, "gaussian", "gaussian poses", 1e-4, 1e-5, hint))


def _poses_device(ctx, torch):
    return ctx.fn("sample_camera_poses")(3, 2.0, (0.0, 1.0), (0.0, 0.5), "uniform", ctx.generator(), ctx.device,
                                         torch.float64)


# ----------------------------------------------------------------------------- r1_penalty
def probe_r1(ctx):
    torch = _torch()
    g = ctx.generator()
    x = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    w = torch.rand(3, 5, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    logits = (w * x ** 2).sum(dim=(1, 2, 3))  # D(x) = sum w x^2: grad = 2 w x
    penalty = ctx.fn("r1_penalty")(x, logits)
    if not torch.is_tensor(penalty) or penalty.numel() != 1:
        return {"problem": f"r1_penalty should return a scalar tensor, got {getattr(penalty, 'shape', type(penalty))}"}
    if not penalty.requires_grad:
        return {"problem": "r1_penalty: the penalty has no gradient w.r.t. the discriminator's parameters; call "
                           "torch.autograd.grad(..., create_graph=True) so D can be trained on it"}
    (grad_w,) = torch.autograd.grad(penalty.reshape(()), w)
    want = (4 * w ** 2 * x ** 2).sum(dim=(1, 2, 3)).mean()
    want_grad = (8 * w * x ** 2).mean(0)
    return {"penalty": penalty.reshape(()), "want": want, "grad_w": grad_w, "want_grad": want_grad}


def judge_r1(student, reference, ctx):
    got, want = float(student["penalty"]), float(student["want"])
    if not math.isclose(got, want, rel_tol=1e-6):
        ratio = got / want if want else float("nan")
        hints = {4.0: " (a sum over the batch instead of the mean?)",
                 1 / 16: " (the gradient of the MEAN logit? Each image's gradient must be its own: use .sum())",
                 1 / 75: " (a mean over pixels instead of the sum?)"}
        hint = next((h for r, h in hints.items() if abs(ratio - r) < 1e-3), "")
        return Verdict(False, f"r1_penalty: for D(x) = sum(w x^2) the penalty E_b ||2 w x_b||^2 is {want:.6g}, got "
                              f"{got:.6g} ({ratio:.3g}x){hint}. Square the L2 norm, sum over pixels, average over the batch.")
    if not np.allclose(as_array(student["grad_w"], "grad"), as_array(student["want_grad"], "grad"), rtol=1e-6):
        return Verdict(False, "r1_penalty: its gradient w.r.t. the discriminator's weights is wrong (create_graph=True?)")
    return Verdict(True, "r1_penalty: E ||grad_x D(x)||^2, differentiable w.r.t. D's weights")


def probe_r1_reference(ctx):
    torch = _torch()
    g = ctx.generator()
    conv = torch.nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        conv.weight.copy_(0.3 * torch.randn(conv.weight.shape, generator=g))
        conv.bias.copy_(0.1 * torch.randn(conv.bias.shape, generator=g))
    x = torch.randn(5, 3, 6, 6, generator=g).requires_grad_(True)
    logits = torch.nn.functional.leaky_relu(conv(x), 0.2).mean(dim=(1, 2, 3))[:, None]  # (B, 1)
    penalty = ctx.fn("r1_penalty")(x, logits)
    return {"penalty": torch.as_tensor(penalty).reshape(-1)[:1]}


def _r1_device(ctx, torch):
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, device=ctx.device).requires_grad_(True)
    return ctx.fn("r1_penalty")(x, (x ** 2).sum(dim=(1, 2, 3)))


# ----------------------------------------------------------------------------- the topic
def _reference_close(function, key, label, rtol=1e-4, atol=1e-5):
    def judge(student, reference, ctx):
        return expect_close(student, reference, key, f"{function}: {label}", rtol, atol)
    return judge


CHECKS = [
    make_check("get_rays.shape", "shape", probe_rays_shape, judge_rays_shape, True),
    make_check("get_rays.projection", "value", probe_rays_projection, judge_rays_projection, True, points=2),
    make_check("get_rays.reference", "value", probe_rays_reference, judge_rays_reference, False),
    make_check("get_rays.device", "device", tensor_device_probe(_rays_device), _judge_device("get_rays"), True),

    make_check("stratified_depths.strata", "value", probe_strata, judge_strata, True, points=2),
    make_check("stratified_depths.generator", "value", probe_strata_generator, judge_strata_generator, True),
    make_check("stratified_depths.reference", "value", probe_strata_reference,
           _reference_close("stratified_depths", "depths", "depths (perturb=False)"), False),
    make_check("stratified_depths.device", "device", tensor_device_probe(_strata_device), _judge_device("stratified_depths"), True),

    make_check("volume_render.slab", "value", probe_slab, judge_slab, True, points=2),
    make_check("volume_render.hand", "value", probe_hand, judge_hand, True, points=2),
    make_check("volume_render.weights", "value", probe_weights, judge_weights, True),
    make_check("volume_render.reference", "value", probe_render_reference, judge_render_reference, False, points=2),
    make_check("volume_render.gradcheck", "gradient", probe_gradcheck, judge_gradcheck, True),
    make_check("volume_render.grad_reference", "gradient", probe_grad_reference, judge_grad_reference, False),
    make_check("volume_render.robust", "robustness", probe_robust, judge_robust, True),
    make_check("volume_render.device", "device", tensor_device_probe(_render_device), _judge_device("volume_render"), True),

    make_check("sample_pdf.quantiles", "value", probe_pdf_quantiles, judge_pdf_quantiles, True, points=2),
    make_check("sample_pdf.distribution", "value", probe_pdf_ks, judge_pdf_ks, True),
    make_check("sample_pdf.deterministic", "value", probe_pdf_deterministic, judge_pdf_deterministic, True),
    make_check("sample_pdf.no_grad", "gradient", probe_pdf_no_grad, judge_pdf_no_grad, True),
    make_check("sample_pdf.reference", "value", probe_pdf_reference, judge_pdf_reference, False),
    make_check("sample_pdf.device", "device", tensor_device_probe(_pdf_device), _judge_device("sample_pdf"), True),

    make_check("hierarchical_depths.merge", "value", probe_hier, judge_hier, True, points=2),
    make_check("hierarchical_depths.reference", "value", probe_hier_reference,
           _reference_close("hierarchical_depths", "depths", "merged depths (deterministic)", 1e-4, 1e-4), False),
    make_check("hierarchical_depths.device", "device", tensor_device_probe(_hier_device), _judge_device("hierarchical_depths"), True),

    make_check("FiLMSiren.forward", "value", probe_film_forward, judge_film_forward, True),
    make_check("FiLMSiren.init", "value", probe_film_init, judge_film_init, True, points=2),
    make_check("FiLMSiren.gradcheck", "gradient", probe_film_gradcheck, judge_film_gradcheck, True),
    make_check("FiLMSiren.reference", "value", probe_film_reference,
           _reference_close("FiLMSiren", "out", "output with given weights", 1e-4, 1e-5), False),
    make_check("FiLMSiren.device", "device", tensor_device_probe(_film_device), _judge_device("FiLMSiren"), True),
    make_check("FiLMSiren.fit_scene", "quality", probe_fit_scene, judge_fit_scene, False, points=3, timeout=300.0,
           fixed_seed=FIT_SEED, figure=figure_fit_scene),

    make_check("MappingNetwork.forward", "value", probe_mapping_forward, judge_mapping_forward, True, points=2),
    make_check("MappingNetwork.init", "value", probe_mapping_init, judge_mapping_init, True),
    make_check("MappingNetwork.reference", "value", probe_mapping_reference,
           lambda s, r, c: all_of(expect_close(s, r, "freq", "MappingNetwork frequencies", 1e-4, 1e-4),
                                  expect_close(s, r, "phase", "MappingNetwork phase shifts", 1e-4, 1e-5)), False),
    make_check("MappingNetwork.device", "device", tensor_device_probe(_mapping_device), _judge_device("MappingNetwork"), True),

    make_check("look_at_origin.frame", "value", probe_look_at, judge_look_at, True, points=2),
    make_check("look_at_origin.reference", "value", probe_look_at_reference,
           _reference_close("look_at_origin", "c2w", "camera-to-world matrices", 1e-4, 1e-5), False),
    make_check("look_at_origin.device", "device", tensor_device_probe(_look_at_device), _judge_device("look_at_origin"), True),

    make_check("sample_camera_poses.distribution", "value", probe_poses, judge_poses, True, points=2),
    make_check("sample_camera_poses.generator", "value", probe_poses_generator, judge_poses_generator, True),
    make_check("sample_camera_poses.reference", "value", probe_poses_reference, judge_poses_reference, False),
    make_check("sample_camera_poses.device", "device", tensor_device_probe(_poses_device), _judge_device("sample_camera_poses"), True),

    make_check("r1_penalty.value", "value", probe_r1, judge_r1, True, points=2),
    make_check("r1_penalty.reference", "value", probe_r1_reference,
           _reference_close("r1_penalty", "penalty", "penalty on a small conv discriminator", 1e-4, 1e-6), False),
    make_check("r1_penalty.device", "device", tensor_device_probe(_r1_device), _judge_device("r1_penalty"), True),
]

# the dataset renderer's camera code does what get_rays / look_at_origin / sample_camera_poses ask for
KIT_CAMERAS = ("gen3d.render_data.camera_rays", "gen3d.render_data.orbit_camera", "gen3d.render_data.look_at",
               "gen3d.render_data.sample_cameras")
TOPIC = Topic(name="02_pigan", notebook="solutions/02_pigan/pigan.ipynb", functions=FUNCTIONS, checks=CHECKS,
              forbidden=KIT_CAMERAS)
