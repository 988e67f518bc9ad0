"""Pictures: voxel plots and fast voxel renders, image grids, turntable GIFs, training curves.

Conventions (see ``gen3d``): voxels ``(B, 1, D, H, W)`` with index ``(k, j, i) <-> (z, y, x)``
over the world cube [-1, 1]^3; +y up; azimuth 0 looks at the object's front from +z and azimuth
grows towards +x; angles are in **radians**, as everywhere in ``gen3d``. Plotting functions take
images in [0, 1] (or [-1, 1] with ``value_range=(-1, 1)``).

Every plotting function returns its ``matplotlib.figure.Figure`` (or an array) and never calls
``plt.show``. Figures made here are closed in pyplot before they are returned, so a notebook
shows each once: as the cell's last expression, or with ``display(fig)``. ``save=path`` also
writes the figure (atomically) to ``path``.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["show_voxels", "show_mesh", "voxel_silhouettes", "render_voxels", "make_grid",
           "image_grid", "voxel_grid_figure", "turntable_gif", "plot_curves"]

DEFAULT_COLOR = (0.35, 0.55, 0.85)  # voxel colour (RGB in [0, 1])


# ----------------------------------------------------------------------------- plumbing
def _atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _save_figure(fig, save) -> None:
    """Write ``fig`` to ``save`` (format from the extension, png by default), atomically."""
    if save is not None:
        _atomic_write(save, lambda tmp: fig.savefig(tmp, format=Path(save).suffix[1:] or "png",
                                                    bbox_inches="tight", dpi=fig.dpi))


def _finish(fig, save):
    """Save (if asked), detach from pyplot (no double display in notebooks), return the figure."""
    _save_figure(fig, save)
    plt.close(fig)
    return fig


def _finish_axes(ax, own: bool, save):
    """A figure made here is finished; a caller's axes keep their (open) figure, saved if asked."""
    if own:
        return _finish(ax.figure, save)
    _save_figure(ax.figure, save)
    return ax.figure


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().float().numpy() if torch.is_tensor(x) else np.asarray(x, np.float32)


def _single_grid(vox) -> np.ndarray:
    """(D, H, W) or (1, D, H, W) -> (D, H, W) numpy."""
    arr = _to_numpy(vox)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(f"vox must be (D, H, W) or (1, D, H, W), got shape {arr.shape}")
    return arr


# ----------------------------------------------------------------------------- voxels
def show_voxels(vox, threshold: float = 0.5, ax=None, azimuth: float = math.radians(30),
                elevation: float = math.radians(20), color=DEFAULT_COLOR, title=None, save=None):
    """Matplotlib 3D voxel plot of one grid, drawn in the world frame of ``gen3d``.

    vox: (D, H, W) or (1, D, H, W) occupancy in [0, 1], index ``(k, j, i) <-> (z, y, x)``;
    cells ``> threshold`` are drawn. The plot shows world +y up; at ``azimuth=0`` the viewer
    stands on +z (the object's front) with +x to the right. Angles in radians.
    Matplotlib's vertical axis is its Z, so world (x, y, z) is drawn at matplotlib (x, -z, y).
    ax: an existing ``Axes3D`` to draw into (its figure is returned and left open), or None.
    Slow above ~40^3 filled surface cells; use :func:`render_voxels` for many shapes.
    """
    grid = _single_grid(vox) > threshold  # (D, H, W) = (z, y, x)
    filled = grid.transpose(2, 0, 1)[:, ::-1, :]  # (x, -z, y): matplotlib (X, Y, Z)
    d, h, w = grid.shape
    # cell corners in world units, for matplotlib's (X, Y, Z) = world (x, -z, y)
    cx, cz, cy = np.meshgrid(np.linspace(-1, 1, w + 1), np.linspace(1, -1, d + 1),
                             np.linspace(-1, 1, h + 1), indexing="ij")  # (W+1, D+1, H+1) each
    own = ax is None
    if own:
        fig = plt.figure(figsize=(4, 4))
        ax = fig.add_subplot(projection="3d")
    ax.voxels(cx, -cz, cy, filled, facecolors=color, edgecolor=(0, 0, 0, 0.25), linewidth=0.3)
    ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), xlabel="x", ylabel="-z (front)", zlabel="y")
    ax.set_box_aspect((1, 1, 1))
    # matplotlib puts its eye at (cos e cos a, cos e sin a, sin e); world azimuth 0 (eye on +z,
    # i.e. matplotlib -Y) is matplotlib azimuth -90 degrees
    ax.view_init(elev=math.degrees(elevation), azim=math.degrees(azimuth) - 90)
    ax.tick_params(labelsize=6)
    if title is not None:
        ax.set_title(title)
    return _finish_axes(ax, own, save)


def _world_to_mpl(xyz: np.ndarray) -> np.ndarray:
    """World (..., 3) (x, y, z) -> matplotlib (X, Y, Z) = (x, -z, y) (its Z is vertical)."""
    return np.stack([xyz[..., 0], -xyz[..., 2], xyz[..., 1]], axis=-1)


def show_mesh(verts, faces, ax=None, azimuth: float = math.radians(30),
              elevation: float = math.radians(20), color=DEFAULT_COLOR, title=None, save=None):
    """Matplotlib 3D plot of a triangle mesh, in the same frame and view as :func:`show_voxels`.

    verts: (V, 3) world (x, y, z) (e.g. from ``gen3d.mesh.extract_mesh``); faces: (F, 3) ints.
    Faces are shaded by how much they face a light above-left of the viewer.
    """
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    v, f = _to_numpy(verts), np.asarray(faces.cpu() if torch.is_tensor(faces) else faces, np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"verts must be (V, 3) and faces (F, 3), got {v.shape} and {f.shape}")
    tri = v[f]  # (F, 3, 3) world
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    eye = np.array([math.cos(elevation) * math.sin(azimuth), math.sin(elevation),
                    math.cos(elevation) * math.cos(azimuth)])
    light = eye + np.array([-0.3, 0.6, 0.0])
    shade = 0.35 + 0.65 * np.clip(normal @ (light / np.linalg.norm(light)), 0, 1)  # (F,)
    own = ax is None
    if own:
        fig = plt.figure(figsize=(4, 4))
        ax = fig.add_subplot(projection="3d")
    ax.add_collection3d(Poly3DCollection(_world_to_mpl(tri), facecolors=shade[:, None]
                                         * np.asarray(color)[None], linewidths=0))
    ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), xlabel="x", ylabel="-z (front)", zlabel="y")
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=math.degrees(elevation), azim=math.degrees(azimuth) - 90)
    ax.tick_params(labelsize=6)
    if title is not None:
        ax.set_title(title)
    return _finish_axes(ax, own, save)


def voxel_silhouettes(vox) -> torch.Tensor:
    """Max-projections of voxel grids onto three axis-aligned image planes.

    vox: (..., R, R, R) occupancy in [0, 1] (e.g. (R, R, R) or (B, 1, R, R, R)).
    Returns (..., 3, R, R) images, row 0 at the top, in [0, 1]:
    ``[0]`` front (seen from +z: x right, y up), ``[1]`` side (seen from +x: -z right, y up),
    ``[2]`` top (seen from +y: x right, the front +z at the bottom).
    """
    v = torch.as_tensor(vox)
    if v.dim() < 3 or len(set(v.shape[-3:])) != 1:
        raise ValueError(f"vox must end in a cube (..., R, R, R), got shape {tuple(v.shape)}")
    v = v.float()
    front = v.amax(dim=-3).flip(-2)  # (..., y, x) -> row 0 = top
    side = v.amax(dim=-1).transpose(-1, -2).flip(-2, -1)  # (..., y, z) -> top row, -z to the right
    top = v.amax(dim=-2)  # (..., z, x): row 0 = z = -1 (back), bottom = front
    return torch.stack([front, side, top], dim=-3)  # (..., 3, R, R)


def _camera_axes(azimuth: torch.Tensor, elevation: torch.Tensor):
    """Unit vectors (B, 3) of an orbit camera: position direction, right and up (OpenGL)."""
    eye = torch.stack([elevation.cos() * azimuth.sin(), elevation.sin(),
                       elevation.cos() * azimuth.cos()], dim=-1)  # (B, 3), azimuth 0 -> +z
    world_up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device).expand_as(eye)
    right = F.normalize(torch.linalg.cross(-eye, world_up, dim=-1), dim=-1)  # forward x up
    up = torch.linalg.cross(right, -eye, dim=-1)  # right x forward
    return eye, right, up


def _occupancy_gradient(occ: torch.Tensor) -> torch.Tensor:
    """(B, 1, D, H, W) -> (B, 3, D, H, W) central differences along (x, y, z) of a blurred grid."""
    blurred = F.avg_pool3d(occ, 3, stride=1, padding=1, count_include_pad=True)
    p = F.pad(blurred, (1, 1, 1, 1, 1, 1))  # zeros outside
    gx = p[:, :, 1:-1, 1:-1, 2:] - p[:, :, 1:-1, 1:-1, :-2]
    gy = p[:, :, 1:-1, 2:, 1:-1] - p[:, :, 1:-1, :-2, 1:-1]
    gz = p[:, :, 2:, 1:-1, 1:-1] - p[:, :, :-2, 1:-1, 1:-1]
    return torch.cat([gx, gy, gz], dim=1)  # (B, 3, D, H, W)


@torch.no_grad()
def render_voxels(vox: torch.Tensor, azimuth=math.radians(30), elevation=math.radians(20),
                  size: int = 64, threshold: float = 0.5, extent: float = 1.2,
                  color=DEFAULT_COLOR, background: float = 1.0) -> torch.Tensor:
    """Fast shaded orthographic render of voxel grids (for sample grids, not for training).

    vox: (B, 1, D, H, W) occupancy in [0, 1] over the world cube [-1, 1]^3.
    azimuth, elevation: floats or (B,) tensors in radians (camera on +z at azimuth 0, moving
        towards +x as azimuth grows; positive elevation looks from above).
    size: output side in pixels; extent: half-width of the view in world units.
    Rays through pixel centres march the trilinearly interpolated grid front to back; the first
    crossing of ``threshold`` is shaded with a Lambert term on the occupancy gradient plus a
    depth cue. Returns (B, 3, size, size) RGB in [0, 1] on the input's device (white background).
    """
    if not torch.is_tensor(vox) or vox.dim() != 5 or vox.shape[1] != 1:
        raise ValueError(f"vox must be a (B, 1, D, H, W) tensor, got "
                         f"{tuple(vox.shape) if torch.is_tensor(vox) else type(vox).__name__}")
    occ = vox.float()
    b, dev = occ.shape[0], occ.device
    az = torch.as_tensor(azimuth, dtype=torch.float32, device=dev).expand(b)
    el = torch.as_tensor(elevation, dtype=torch.float32, device=dev).expand(b)
    eye, right, up = _camera_axes(az, el)  # (B, 3) each
    # 1. ray origins on a plane 2 units from the centre, one per pixel centre
    ndc = (torch.arange(size, device=dev, dtype=torch.float32) + 0.5) / size * 2 - 1
    u = ndc[None, :].expand(size, size)  # (size, size): column -> +x of the camera
    v = -ndc[:, None].expand(size, size)  # row 0 at the top
    origin = (2 * eye[:, None, None] + extent * (u[None, ..., None] * right[:, None, None]
              + v[None, ..., None] * up[:, None, None]))  # (B, size, size, 3)
    # 2. samples every half cell along the rays (t in [2 - sqrt 3, 2 + sqrt 3] covers the cube)
    n_samples = int(math.ceil(2 * math.sqrt(3) * max(occ.shape[2:]))) + 1
    t = torch.linspace(2 - math.sqrt(3), 2 + math.sqrt(3), n_samples, device=dev)  # (S,)
    points = origin[:, None] - t[None, :, None, None, None] * eye[:, None, None, None]
    # points: (B, S, size, size, 3) world (x, y, z) = grid_sample's (x, y, z) order
    values = F.grid_sample(occ, points, align_corners=False)[:, 0]  # (B, S, size, size)
    # 3. first crossing along each ray, refined linearly between the two samples around it
    inside = values > threshold
    hit = inside.any(dim=1)  # (B, size, size)
    first = inside.float().argmax(dim=1, keepdim=True)  # (B, 1, size, size)
    prev = (first - 1).clamp_min(0)
    v1, v0 = values.gather(1, first), values.gather(1, prev)
    frac = ((threshold - v0) / (v1 - v0).clamp_min(1e-6)).clamp(0, 1)
    idx = prev.float() + torch.where(first > 0, frac, torch.zeros_like(frac))  # (B, 1, size, size)
    depth = idx[:, 0] / (n_samples - 1)  # (B, size, size) in [0, 1], 0 = nearest
    t_hit = t[0] + idx[:, 0] * (t[1] - t[0])
    surface = origin - t_hit[..., None] * eye[:, None, None]  # (B, size, size, 3)
    # 4. Lambert shading on the normal (minus the occupancy gradient), light near the camera
    grad = F.grid_sample(_occupancy_gradient(occ), surface[:, None], align_corners=False)[:, :, 0]
    normal = -F.normalize(grad, dim=1)  # (B, 3, size, size)
    light = F.normalize(eye + 0.5 * up - 0.3 * right, dim=-1)  # (B, 3)
    lambert = (normal * light[:, :, None, None]).sum(1).clamp_min(0)  # (B, size, size)
    shade = (0.3 + 0.7 * lambert) * (1 - 0.35 * depth)  # (B, size, size)
    rgb = torch.as_tensor(color, dtype=torch.float32, device=dev)[None, :, None, None]
    image = torch.where(hit[:, None], shade[:, None] * rgb, torch.full_like(rgb, background))
    return image.clamp(0, 1)  # (B, 3, size, size)


# ----------------------------------------------------------------------------- images
def make_grid(images, nrow: int = 8, pad: int = 2, value_range=(0.0, 1.0),
              pad_value: float = 1.0) -> np.ndarray:
    """Tile a batch of images into one picture.

    images: (B, C, H, W) with C in {1, 3}, values in ``value_range`` ((0, 1) or (-1, 1)).
    Returns (rows * (H + pad) + pad, nrow * (W + pad) + pad, 3) float array in [0, 1].
    """
    x = _to_numpy(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        raise ValueError(f"images must be (B, C, H, W) with C in (1, 3) and B >= 1, got {x.shape}")
    lo, hi = value_range
    x = np.clip((x - lo) / (hi - lo), 0, 1)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)  # (B, 3, H, W)
    b, _, h, w = x.shape
    ncol = max(1, min(nrow, b))
    nrows = int(math.ceil(b / ncol))
    out = np.full((nrows * (h + pad) + pad, ncol * (w + pad) + pad, 3), pad_value, np.float32)
    for n in range(b):
        r, c = divmod(n, ncol)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        out[top:top + h, left:left + w] = x[n].transpose(1, 2, 0)  # (H, W, 3)
    return out


def image_grid(images, nrow: int = 8, value_range=(0.0, 1.0), title=None, scale: float = 1.0,
               save=None):
    """Figure showing a batch of images in a grid.

    images: (B, 3, H, W) (or (B, 1, H, W)) tensor or array with values in ``value_range``:
    (0, 1) for plots (the default) or (-1, 1) for what models see. ``scale`` enlarges the figure.
    """
    grid = make_grid(images, nrow=nrow, value_range=value_range)
    height, width = grid.shape[:2]
    inches = scale * max(2.0, min(12.0, width / 40))
    fig, ax = plt.subplots(figsize=(inches, inches * height / width + (0.3 if title else 0)))
    ax.imshow(grid, interpolation="nearest")
    ax.axis("off")
    if title is not None:
        ax.set_title(title)
    fig.tight_layout()
    return _finish(fig, save)


def voxel_grid_figure(vox, nrow: int = 8, azimuth=math.radians(30), elevation=math.radians(20),
                      size: int = 64, threshold: float = 0.5, title=None, save=None):
    """Figure of a batch of voxel grids, each rendered with :func:`render_voxels`.

    vox: (B, 1, D, H, W) occupancy in [0, 1] (tensor or array); angles in radians.
    """
    grid = vox if torch.is_tensor(vox) else torch.as_tensor(np.asarray(vox, np.float32))
    images = render_voxels(grid, azimuth, elevation, size=size, threshold=threshold)
    return image_grid(images, nrow=nrow, title=title, save=save)


def turntable_gif(frames, path, fps: int = 10, scale: int = 1) -> Path:
    """Write an animated GIF (looping) of a turntable or any frame sequence.

    frames: (T, 3, H, W) in [0, 1]; scale: integer nearest-neighbour enlargement (32 px frames
    are tiny); written atomically. Returns the path.
    """
    from PIL import Image

    x = _to_numpy(frames)
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[0] == 0:
        raise ValueError(f"frames must be (T, 3, H, W) with T >= 1, got shape {x.shape}")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    x = (np.clip(x, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)  # (T, H, W, 3)
    x = x.repeat(scale, axis=1).repeat(scale, axis=2)
    images = [Image.fromarray(f) for f in x]
    duration = int(round(1000 / fps))
    return _atomic_write(path, lambda tmp: images[0].save(
        tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0))


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (same length; the first values average what exists)."""
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


def plot_curves(history: dict, title=None, xlabel: str = "step", logy: bool = False,
                smooth: int = 0, separate: bool = False, save=None):
    """Training curves: one line per entry of ``history`` (name -> list of floats per step).

    smooth: moving-average window (the raw curve stays, faded); separate: one panel per curve
    (useful when scales differ); logy: logarithmic y axis.
    """
    if not isinstance(history, dict) or not history:
        raise ValueError("history must be a non-empty dict of name -> list of floats")
    names = list(history)
    n_panels = len(names) if separate else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(4.5 * n_panels, 3.2), squeeze=False)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, name in enumerate(names):
        y = np.asarray([float(v) for v in history[name]], dtype=np.float64)
        ax = axes[0, n if separate else 0]
        col = colors[n % len(colors)]
        if smooth and smooth > 1 and len(y) > 1:
            ax.plot(y, color=col, alpha=0.25, linewidth=0.8)
            ax.plot(_smooth(y, smooth), color=col, label=name)
        else:
            ax.plot(y, color=col, label=name)
    for ax in axes[0]:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if logy:
            ax.set_yscale("log")
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, save)
