"""Plumbing for topic 05_sds (not graded): the two 2D priors, the voxel radiance grid, the SDS
optimisation loop, evaluation (Janus score, multi-view consistency, category score) and turntables.

The notebook's graded pieces (``sds_loss``, ``query_voxels``, ``random_sds_cameras``, ...) and the
renderer of 02_pigan come in as arguments; nothing here re-implements them, so the autograder's
quality check runs this very loop on a student's ``sds_loss``.

The two priors (``ensure_priors``)
    SDS needs a trained 2D diffusion prior. We compare two, trained identically with 04_diffusion's
    pieces on the same renders, differing only in what they are told:

    * ``"category"``: eps(x_t, t, label), DreamFusion's situation (a text prompt without the view);
    * ``"view"``:     eps(x_t, t, label, camera), MVDream's camera embedding added to the time embedding.

    They live in ``<data_dir>/priors/sds_<kind>_<size>_<mode>.pt`` with a JSON next to each (U-Net
    kwargs, schedule, training config, seconds, final loss). Build them once with
    ``python -m gen3d.hw_sds priors [--mode small] [--kind category|view]`` (``make priors``; on a CPU the two
    train side by side; smoke: seconds; small: 2400 steps, ~20 minutes for the pair on 2 CPU cores). The notebook calls
    :func:`ensure_priors`, which trains what is missing or was trained with another config; the grader distills
    the small priors when both are current, else the smoke ones (see ``autograder/topics/t05_sds.py``).

    How much a prior listens to the camera is measured by :func:`camera_reliance`: a view-aware prior trained
    for 1200 CPU steps ignores it (its denoised guess is as good with the camera turned by 180 degrees); at 2400
    steps it relies on it at moderate noise levels, and hardly at all near t = T.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn

from . import _VALID_MODES
from . import hw_diffusion as hd

__all__ = ["PRIOR_KINDS", "prior_config", "sds_prior_path", "prior_is_current", "ensure_priors", "load_sds_prior",
           "build_prior", "prior_fingerprint", "SDSConfig", "PRESETS", "VoxelGrid", "render_views", "run_sds",
           "view_metrics", "janus_verdict", "camera_reliance", "plot_camera_reliance", "turntable", "show_views",
           "REFERENCE_04", "load_pieces_04"]

REPO = Path(__file__).resolve().parents[1]
REFERENCE_04 = REPO / "solutions" / "04_diffusion" / "diffusion.ipynb"
HANDOUT_04 = REPO / "assignments" / "04_diffusion" / "diffusion.ipynb"
PIECES_04 = ["UNet", "diffusion_loss", "make_beta_schedule", "schedule_from_betas", "normalize_images"]
NAMES_02 = ["get_rays", "stratified_depths", "volume_render", "look_at_origin"]
PRIOR_KINDS = ("category", "view")


# ----------------------------------------------------------------------------- priors
def prior_config(kind: str, mode: str) -> hd.DiffusionConfig:
    """The training config of prior ``kind`` ("category" or "view") in run mode ``mode``.

    Both kinds share everything but ``use_view``; small uses a fixed step count (not a time limit)
    so that the prior, and every figure computed from it, is the same on every machine. Its 2400 steps are
    what the view-aware prior needs before it uses the camera at all (:func:`camera_reliance`: at 1200 steps
    its guesses are as good with the camera turned round, and SDS with it paints no emblem anywhere).
    """
    if kind not in PRIOR_KINDS:
        raise ValueError(f"kind must be one of {PRIOR_KINDS}, got {kind!r}")
    base = {"smoke": replace(hd.PRESETS["smoke"], steps=30),
            "small": replace(hd.PRESETS["small"], steps=2400, time_limit_s=None),
            "full": hd.PRESETS["full"]}[mode]
    return replace(base, use_view=(kind == "view"))


def sds_prior_path(kind: str, mode: Optional[str] = None, root=None) -> Path:
    """``<data_dir>/priors/sds_<kind>_<size>_<mode>.pt`` (its JSON config next to it)."""
    from . import data, run_mode

    mode = mode or run_mode()
    size = prior_config(kind, mode).image_size
    return Path(root or data.data_dir()) / "priors" / f"sds_{kind}_{size}_{mode}.pt"


def prior_is_current(path, kind: str, mode: str) -> bool:
    """True when the prior at ``path`` exists with its JSON and was trained with ``prior_config(kind, mode)``
    (a prior built by an older kit, with another budget, is stale and gets retrained)."""
    path, meta = Path(path), Path(path).with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return False
    try:
        trained = json.loads(meta.read_text()).get("train")
    except (OSError, ValueError):
        return False
    return trained == json.loads(json.dumps(asdict(prior_config(kind, mode))))


def prior_fingerprint(path) -> str:
    """First 12 hex digits of the sha256 of a prior's weights (ties a figure to the prior it came from)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def load_pieces_04(notebook=None):
    """04_diffusion's pieces a prior is trained with, loaded from ``notebook`` (default: the reference
    notebook when present, else the handout). Returns the loaded module."""
    from .notebook import load_notebook, require

    notebook = Path(notebook) if notebook is not None else (REFERENCE_04 if REFERENCE_04.is_file() else HANDOUT_04)
    module = load_notebook(notebook, names=PIECES_04)
    require(module, PIECES_04)
    return module


def _is_stub(obj) -> bool:
    """True when a loaded function (or any method of a loaded class) still raises NotImplementedError."""
    if isinstance(obj, type):
        return any(_is_stub(v) for k, v in vars(obj).items() if callable(v) and not k.startswith("__") or k == "__init__")
    code = getattr(obj, "__code__", None)
    return code is not None and "NotImplementedError" in code.co_names


def load_earlier(path, names, topic: str, log: Callable = print):
    """Your pieces ``names`` of an earlier topic, from your notebook at ``path`` (relative to the notebook).

    Pieces that are missing or still stubs (``raise NotImplementedError``) are taken from the reference
    notebook ``solutions/<topic>/`` when it is present (instructors, or a TA who ships it), with a message;
    without it, a ``RuntimeError`` says what to finish first. Returns a namespace with every name.
    """
    import types

    from .notebook import load_notebook

    pieces, missing = types.SimpleNamespace(), []
    try:
        module = load_notebook(path, names=list(names))
    except (FileNotFoundError, ValueError) as err:
        log(f"could not load {path}: {err}")
        module = None
    for name in names:
        obj = getattr(module, name, None)
        if obj is None or _is_stub(obj):
            missing.append(name)
        setattr(pieces, name, obj)
    if missing:
        reference = REPO / "solutions" / topic / Path(path).name
        if not reference.is_file():
            raise RuntimeError(f"{path}: {', '.join(missing)} not implemented yet. Finish topic {topic} first, "
                               f"or ask your TA for the reference pieces (solutions/{topic}/).")
        ref = load_notebook(reference, names=list(missing))
        for name in missing:
            setattr(pieces, name, getattr(ref, name))
        log(f"{topic}: using the REFERENCE {', '.join(missing)} (yours are missing or raise NotImplementedError)")
    else:
        log(f"{topic}: using your {', '.join(names)} from {path}")
    return pieces


def build_prior(kind: str, mode: str, pieces, path, device=None, log: Callable = print) -> Path:
    """Train prior ``kind`` for ``mode`` with 04's ``pieces`` (UNet, diffusion_loss, make_beta_schedule,
    schedule_from_betas, normalize_images) and save it atomically at ``path``."""
    from . import data as gdata

    cfg = prior_config(kind, mode)
    torch.manual_seed(cfg.seed)
    data = hd.load_training_data(pieces.normalize_images, image_size=cfg.image_size, split="train")
    model = pieces.UNet(**cfg.unet_kwargs(len(gdata.CATEGORIES)))
    schedule = pieces.schedule_from_betas(pieces.make_beta_schedule(cfg.schedule, cfg.num_timesteps))
    log(f"training the {kind} prior ({mode}: {cfg.steps} steps, use_view={cfg.use_view})")
    result = hd.train_diffusion(model, pieces.diffusion_loss, data, schedule, cfg, device, progress=False)
    tail = result["losses"][-50:]
    metrics = {"kind": kind, "mode": mode, "steps": len(result["losses"]), "seconds": round(result["seconds"], 1),
               "final_loss": round(sum(tail) / len(tail), 5)}
    path = hd.save_prior(result["ema"], cfg, len(gdata.CATEGORIES), metrics=metrics, path=path)
    for written in (path, path.with_suffix(".json")):
        written.chmod(0o644)  # the grader's sandboxed child (user nobody) must read it
    log(f"  saved {path} ({metrics})")
    return path


def ensure_priors(mode: Optional[str] = None, root=None, pieces=None, device=None, force: bool = False,
                  log: Callable = print, kinds=PRIOR_KINDS) -> dict:
    """The priors ``kinds`` (default both) of ``mode`` (default ``gen3d.run_mode()``): ``{kind: path}``,
    training what is missing or stale (trained with another config: :func:`prior_is_current`).

    pieces: 04's pieces to train with (default :func:`load_pieces_04`, the reference notebook).
    """
    from . import run_mode

    mode = mode or run_mode()
    paths = {}
    for kind in kinds:
        path = sds_prior_path(kind, mode, root)
        if force or not prior_is_current(path, kind, mode):
            if path.is_file():
                log(f"{path.name} was trained with another config: retraining it")
            pieces = pieces if pieces is not None else load_pieces_04()
            build_prior(kind, mode, pieces, path, device, log)
        paths[kind] = path
    return paths


def load_sds_prior(path, unet_cls, make_beta_schedule, schedule_from_betas, device=None):
    """(frozen eps-model in eval mode, its DiffusionSchedule on ``device``, config dict) of a saved prior."""
    model, config = hd.load_prior(path, unet_cls, device)
    schedule = schedule_from_betas(make_beta_schedule(config["schedule"]["kind"],
                                                      int(config["schedule"]["num_timesteps"])))
    config = {**config, "fingerprint": prior_fingerprint(path)}
    return model, schedule.to(device or "cpu"), config


# ----------------------------------------------------------------------------- configuration
@dataclass
class SDSConfig:
    image_size: int = 32                     # renders match the prior's training images
    grid_res: int = 32                       # R: the voxel radiance grid is R^3 (density + RGB)
    n_samples: int = 32                      # S: stratified samples per ray
    near: float = 1.6                        # ray interval [near, far] around the world cube
    far: float = 5.2
    radius: float = 3.4                      # camera distance, fov and elevations as in the training renders
    fov_degrees: float = 40.0
    elevation_range: tuple = (math.radians(-10.0), math.radians(40.0))
    batch: int = 4                           # random views per SDS step
    steps: int = 800                         # optimisation steps (at 400 the view-aware object's emblem is faint)
    lr: float = 0.1                          # Adam on the grid values
    guidance_scale: float = 10.0             # classifier-free guidance s of the SDS target
    t_range: tuple = (0.02, 0.7)             # diffusion times (fractions of T): DreamFusion's top 0.98 cut to 0.7,
                                             # else details such as the emblem never reach the object (notebook, 11)
    blob_density: float = 4.0                # initial density logit at the centre (DreamFusion's density blob)
    blob_radius: float = 0.6                 # ... falling linearly to 0 at this radius
    snapshot_every: int = 200                # steps between the turntable snapshots
    eval_views: int = 12                     # evenly spaced azimuths for the Janus score
    eval_elevation: float = math.radians(15.0)
    category: str = "chair"                  # the target category
    seed: int = 0


PRESETS = dict(
    smoke=SDSConfig(grid_res=16, n_samples=16, batch=2, steps=4, snapshot_every=2, eval_views=8),
    small=SDSConfig(),
    full=SDSConfig(image_size=64, grid_res=64, n_samples=64, batch=8, steps=3000, snapshot_every=500, eval_views=16),
)


QUALITY_MARGIN = 0.15  # the grader's slack on category / Janus scores vs the reference's run (same budget)


def quality_config(mode: str) -> SDSConfig:
    """The budget of the autograder's SDS quality check in ``mode``: the notebook's in smoke and small (at 400
    small steps the view-aware object's front emblem is still too faint for the detector: the check needs 800)."""
    return {"smoke": PRESETS["smoke"], "small": replace(PRESETS["small"], snapshot_every=PRESETS["small"].steps),
            "full": replace(PRESETS["full"], steps=1000, snapshot_every=1000)}[mode]


def category_index(name: str) -> int:
    """Index of a category name in ``gen3d.data.CATEGORIES``."""
    from . import data

    return list(data.CATEGORIES).index(name)


# ----------------------------------------------------------------------------- the 3D representation
class VoxelGrid(nn.Module):
    """The optimised object: a density grid (1, 1, R, R, R) and a colour grid (1, 3, R, R, R) of raw
    logits over the world cube [-1, 1]^3 (gen3d's axis order D = z, H = y, W = x).

    ``forward(points: (..., 3)) -> (sigma (...), rgb (..., 3))`` calls the notebook's ``query_voxels``.
    The density starts as DreamFusion's blob: ``blob_density * (1 - |x| / blob_radius)``; colour logits 0 (grey).
    """

    def __init__(self, query_voxels: Callable, resolution: int, blob_density: float = 4.0, blob_radius: float = 0.6):
        super().__init__()
        self.query_voxels = query_voxels
        centres = -1 + (2 * torch.arange(resolution, dtype=torch.float32) + 1) / resolution      # (R,)
        z, y, x = torch.meshgrid(centres, centres, centres, indexing="ij")                        # (R, R, R)
        radius = torch.sqrt(x ** 2 + y ** 2 + z ** 2)
        self.density = nn.Parameter((blob_density * (1 - radius / blob_radius))[None, None])      # (1, 1, R, R, R)
        self.color = nn.Parameter(torch.zeros(1, 3, resolution, resolution, resolution))

    def forward(self, points):
        return self.query_voxels(self.density, self.color, points)


def render_views(field: Callable, renderer, c2w: torch.Tensor, cfg: SDSConfig, generator=None,
                 perturb: bool = True) -> torch.Tensor:
    """Volume-render ``field`` (points (..., 3) -> sigma, rgb) from cameras ``c2w`` (B, 4, 4) with the
    renderer of 02 (``gen3d.hw_pigan.Renderer``) on a white background.

    Returns images (B, 3, H, W) in [-1, 1] (the prior's range), differentiable w.r.t. the field.
    """
    size = cfg.image_size
    origins, directions = renderer.get_rays(c2w, size, size, cfg.fov_degrees)                    # (B, H, W, 3)
    depths = renderer.stratified_depths(cfg.near, cfg.far, cfg.n_samples, origins.shape[:-1], perturb,
                                        generator, c2w.device, c2w.dtype)                       # (B, H, W, S)
    points = origins[..., None, :] + depths[..., None] * directions[..., None, :]               # (B, H, W, S, 3)
    sigma, rgb = field(points)
    color = renderer.volume_render(sigma, rgb, depths, white_background=True)[0]                # (B, H, W, 3)
    return color.permute(0, 3, 1, 2) * 2 - 1                                                    # (B, 3, H, W)


def orbit(look_at_origin: Callable, n_views: int, elevation: float, radius: float, device=None):
    """Evenly spaced azimuths in [-pi, pi) at one elevation: (azimuths (V,), c2w (V, 4, 4))."""
    azimuth = torch.linspace(-math.pi, math.pi, n_views + 1)[:-1].to(device)
    c2w = look_at_origin(azimuth, torch.full_like(azimuth, elevation), radius)
    return azimuth, c2w


# ----------------------------------------------------------------------------- the SDS loop
def run_sds(sds_loss: Callable, eps_model, schedule, cfg: SDSConfig, renderer, query_voxels: Callable,
            random_sds_cameras: Callable, look_at_origin: Callable, label: int, device=None,
            guidance_scale: Optional[float] = None, steps: Optional[int] = None, progress: bool = True) -> dict:
    """Optimise a :class:`VoxelGrid` so that its renders from random cameras follow the prior's score.

    Every step: ``random_sds_cameras`` -> render (02's renderer) -> ``sds_loss(images, eps_model, schedule,
    {"label", "view"}, s, t_range, generator)`` -> Adam step on the grid. One ``torch.Generator(cfg.seed)``
    drives every draw, so a run is reproducible.
    Returns dict: ``grid`` (the VoxelGrid), ``losses`` (list), ``snapshots`` ({step: (V, 3, H, W) [-1, 1]
    renders at ``cfg.eval_views`` azimuths}), ``azimuths`` (V,), ``seconds``.
    """
    device = torch.device(device or "cpu")
    scale = cfg.guidance_scale if guidance_scale is None else guidance_scale
    steps = cfg.steps if steps is None else steps
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    grid = VoxelGrid(query_voxels, cfg.grid_res, cfg.blob_density, cfg.blob_radius).to(device)
    optimizer = torch.optim.Adam(grid.parameters(), lr=cfg.lr)
    labels = torch.full((cfg.batch,), int(label), dtype=torch.long, device=device)
    losses, snapshots, started = [], {}, time.time()
    azimuths, eval_c2w = orbit(look_at_origin, cfg.eval_views, cfg.eval_elevation, cfg.radius, device)
    for step in range(steps + 1):
        if step % cfg.snapshot_every == 0 or step == steps:
            with torch.no_grad():
                snapshots[step] = render_views(grid, renderer, eval_c2w, cfg, perturb=False).cpu()
        if step == steps:
            break
        cams = random_sds_cameras(cfg.batch, look_at_origin, cfg.radius, cfg.elevation_range, generator, device)
        images = render_views(grid, renderer, cams["c2w"], cfg, generator)                   # (B, 3, H, W)
        loss = sds_loss(images, eps_model, schedule, {"label": labels, "view": cams["view"]}, scale,
                        cfg.t_range, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress and (step % max(1, steps // 5) == 0):
            print(f"step {step:4d}  loss {sum(losses[-20:]) / len(losses[-20:]):.4f}  {time.time() - started:.0f} s")
    return {"grid": grid, "losses": losses, "snapshots": snapshots, "azimuths": azimuths.cpu(),
            "seconds": time.time() - started}


# ----------------------------------------------------------------------------- evaluation
def view_metrics(images: torch.Tensor, azimuths, label: int, model=None) -> dict:
    """What the kit's image classifier says about renders of ONE object from several azimuths.

    images: (V, 3, H, W) in [-1, 1]; azimuths: (V,) radians (0 = the front); label: the target category.
    Returns plain floats:
      ``janus``: fraction of back-hemisphere views where the front-emblem detector fires (0 ideal,
        ~1 for a face on every side; ``gen3d.features.janus_score``); ``front_rate``: same on the front;
      ``buckets_firing``: fraction of 8 azimuth sectors whose views fire (~0.5 ideal, 1 = Janus);
      ``category``: mean probability of the target category over the views (the category score);
      ``consistency``: fraction of views whose predicted category is the views' majority category
        (multi-view consistency: 1 when every side reads as the same object).
    """
    from . import features

    images = images.detach().float().cpu().clamp(-1, 1)
    model = features.load_image_classifier("cpu") if model is None else model
    janus = features.janus_score(images[None], torch.as_tensor(azimuths).float().cpu(), model)
    with torch.no_grad():
        logits = model(images)[0]                                                              # (V, C)
    probs = logits.softmax(-1)
    predicted = probs.argmax(-1)
    majority = torch.bincount(predicted, minlength=probs.shape[1]).max()
    return {"janus": janus["score"], "front_rate": janus["front_rate"], "buckets_firing": janus["buckets_firing"],
            "category": float(probs[:, int(label)].mean()), "consistency": float(majority) / len(predicted)}


def janus_verdict(category: dict, view: dict) -> str:
    """One sentence comparing the :func:`view_metrics` of the category-only and the view-aware objects."""
    figures = (f"Janus score {category['janus']:.2f} -> {view['janus']:.2f}, "
               f"front rate {category['front_rate']:.2f} -> {view['front_rate']:.2f}")
    if category["front_rate"] == 0 and view["front_rate"] == 0 and category["janus"] == view["janus"] == 0:
        return (f"neither object shows an emblem the detector recognises, so the Janus score cannot separate "
                f"the priors in this run: look at the pictures ({figures})")
    if view["janus"] < category["janus"] and view["front_rate"] >= 0.5:
        return f"the view-aware prior fixed the Janus problem: the emblem stays on the front ({figures})"
    if view["janus"] < category["janus"]:
        return f"the view-aware prior lowered the Janus score but lost the emblem on the front too ({figures})"
    if view["janus"] == category["janus"]:
        return f"no difference in Janus score in this run ({figures})"
    return f"the view-aware prior did NOT lower the Janus score in this run ({figures})"


@torch.no_grad()
def camera_reliance(eps_model, schedule, held_out: dict, fractions=(0.1, 0.3, 0.5, 0.7, 0.9), n_images: int = 256,
                    seed: int = 0) -> dict:
    """How much a prior's denoised guess depends on the camera it is told, at each noise level.

    held_out: :func:`gen3d.hw_diffusion.load_training_data` of the test split (``x`` (M, 3, S, S) in [-1, 1],
    ``label`` (M,), ``view`` (M, 2)). For ``n_images`` of them at t = floor(fraction T):
    x_t = sqrt(a_t) x + sqrt(1 - a_t) eps, and the prior's guess of the clean image
    x0_hat = (x_t - sqrt(1 - a_t) eps_hat(x_t, t, label, view)) / sqrt(a_t), clamped to [-1, 1], once with the
    true camera and once with the camera turned by 180 degrees (same x_t).
    Returns ``{fraction: {"true": mse, "turned": mse, "reliance": turned / true - 1}}`` (plain floats):
    reliance 0 means the camera makes no difference (always so for a prior without a view input).
    """
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(held_out["x"]), generator=generator)[:n_images]
    device = next(iter(eps_model.parameters()), held_out["x"]).device
    x0 = held_out["x"][pick].to(device)                                                      # (N, 3, S, S)
    view = held_out["view"][pick].to(device)                                                 # (N, 2)
    turned = torch.stack([view[:, 0] + math.pi, view[:, 1]], dim=-1)                         # (N, 2)
    conds = {"true": view, "turned": turned}
    result = {}
    for fraction in fractions:
        t = torch.full((len(x0),), int(fraction * schedule.num_timesteps), dtype=torch.long, device=device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        alpha_bar = hd.extract(schedule.alphas_cumprod, t, x0)                              # (N, 1, 1, 1)
        x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
        errors = {}
        for name, camera in conds.items():
            eps_hat = eps_model(x_t, t, {"label": held_out["label"][pick].to(device), "view": camera})
            guess = ((x_t - (1 - alpha_bar).sqrt() * eps_hat) / alpha_bar.sqrt()).clamp(-1, 1)
            errors[name] = float(((guess - x0) ** 2).mean())
        result[float(fraction)] = {**errors, "reliance": errors["turned"] / max(errors["true"], 1e-12) - 1}
    return result


def plot_camera_reliance(results: dict, save=None):
    """One curve per prior (``{name: camera_reliance(...)}``): relative error increase vs t / T."""
    import matplotlib.pyplot as plt

    from .viz import _finish

    fig, ax = plt.subplots(figsize=(5, 3))
    for name, curve in results.items():
        xs = list(curve)
        ax.plot(xs, [100 * curve[x]["reliance"] for x in xs], "o-", label=name)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="t / T", ylabel="error increase (%)",
           title="x0 guess with the camera turned round vs the true one")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, save)


def turntable(field: Callable, renderer, look_at_origin: Callable, cfg: SDSConfig, path, n_frames: int = 24,
              scale: int = 4) -> Path:
    """An animated GIF of ``field`` turning once around at ``cfg.eval_elevation``."""
    from . import viz

    with torch.no_grad():
        device = next(field.parameters()).device if isinstance(field, nn.Module) else "cpu"
        _, c2w = orbit(look_at_origin, n_frames, cfg.eval_elevation, cfg.radius, device)
        frames = render_views(field, renderer, c2w, cfg, perturb=False)
    return viz.turntable_gif(hd.to_unit(frames), path, fps=8, scale=scale)


def show_views(rows: dict, azimuths, title: str = "", save=None):
    """A grid figure: one row per entry of ``rows`` ({name: (V, 3, H, W) in [-1, 1]}), one column per azimuth."""
    images = torch.cat([torch.as_tensor(v).float().cpu() for v in rows.values()])
    degrees = [round(math.degrees(a)) for a in torch.as_tensor(azimuths).tolist()]
    full = f"{title}\nrows: {', '.join(str(k) for k in rows)}; azimuth {degrees} deg"
    return hd.show_images(images, nrow=len(degrees), title=full, save=save)


# ----------------------------------------------------------------------------- command line
def _train_side_by_side(mode: Optional[str], force: bool) -> int:
    """Both priors at once on the CPU, one process (and thread) each: the pair in about the time of one."""
    options = (["--mode", mode] if mode else []) + (["--force"] if force else [])
    jobs = [subprocess.Popen([sys.executable, "-m", "gen3d.hw_sds", "priors", "--kind", kind, *options])
            for kind in PRIOR_KINDS]
    codes = [job.wait() for job in jobs]
    failed = [kind for kind, code in zip(PRIOR_KINDS, codes) if code != 0]
    if failed:
        print(f"training failed (see above) for: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="gen3d.hw_sds: build the two 2D priors of topic 05_sds")
    parser.add_argument("command", choices=["priors"])
    parser.add_argument("--mode", default=None, choices=_VALID_MODES,
                        help="default: gen3d.run_mode()")
    parser.add_argument("--force", action="store_true", help="retrain even when the files exist")
    parser.add_argument("--kind", choices=PRIOR_KINDS, default=None,
                        help="only this prior (default: both, side by side on a CPU)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        if args.kind is None:
            return _train_side_by_side(args.mode, args.force)
        torch.set_num_threads(1)
    from . import device

    started = time.time()
    kinds = PRIOR_KINDS if args.kind is None else (args.kind,)
    paths = ensure_priors(args.mode, device=device(), force=args.force, kinds=kinds)
    print(json.dumps({k: str(v) for k, v in paths.items()}), f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
