"""The dataset renderer: sphere tracing of a procedural shape's analytic SDF (data generation only;
the course's graded volume renderer lives in the notebooks, not here).

Cameras follow ``gen3d``: camera-to-world ``c2w: (B, 4, 4)``, the camera looks down its -z axis,
+y up, +x right (OpenGL / NeRF). Pixel (row r, column c) of an H x W image looks through the
normalised device coordinates ``((c + 0.5) / W * 2 - 1, 1 - (r + 0.5) / H * 2)``; row 0 is the top.
``fov_degrees`` is the horizontal field of view (NeRF's ``camera_angle_x``); the vertical one
follows from the aspect ratio. Angles of orbits are in radians: azimuth 0 puts the camera on +z
looking at the object's front, azimuth grows towards +x (counter-clockwise seen from above);
elevation > 0 is above the object.

Images are RGB ``(3, H, W)`` in [0, 1] on a white background, shaded Lambertian + ambient with a
light fixed to the camera (above, left, behind the viewer), so every view is lit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gen3d.shapes import Shape, _length, _pack, _part_sdf_packed

__all__ = ["CameraConfig", "look_at", "orbit_camera", "sample_cameras", "camera_rays",
           "sphere_trace", "render_shape", "DEFAULT_FOV", "DEFAULT_RADIUS"]

DEFAULT_FOV = 40.0     # degrees, horizontal
DEFAULT_RADIUS = 3.4   # camera distance to the origin
AMBIENT = 0.35         # shade = albedo * (AMBIENT + (1 - AMBIENT) * max(n . l, 0))
LIGHT_IN_CAMERA = (-0.4, 0.6, 0.7)  # light direction in the camera frame (towards the light)
SCENE_BOUND = 0.95     # rays are traced inside the object's box, within [-SCENE_BOUND, SCENE_BOUND]^3


@dataclass(frozen=True)
class CameraConfig:
    """How dataset views are drawn: azimuth uniform in [0, 2 pi) (stratified: the V views of an
    object are a random rotation of V evenly spaced azimuths, so half of them see the front),
    elevation uniform in ``elevation_degrees``, fixed ``radius`` and ``fov_degrees``."""
    elevation_degrees: tuple = (-10.0, 40.0)
    radius: float = DEFAULT_RADIUS
    fov_degrees: float = DEFAULT_FOV
    stratified: bool = True


def _as_tensor(x, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.to(torch.get_default_dtype())
    kwargs = {"dtype": like.dtype, "device": like.device} if like is not None else \
        {"dtype": torch.float32}
    return torch.as_tensor(np.asarray(x, dtype=np.float64), **kwargs)


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> torch.Tensor:
    """Camera-to-world ``(..., 4, 4)`` of a camera at ``eye: (..., 3)`` looking at ``target``
    (its -z axis points at the target, its +y is as close to ``up`` as possible)."""
    eye = _as_tensor(eye)
    target, up = _as_tensor(target, eye), _as_tensor(up, eye)
    if eye.shape[-1:] != (3,):
        raise ValueError(f"eye must have shape (..., 3), got {tuple(eye.shape)}")
    z = F.normalize(eye - target, dim=-1)                               # (..., 3) backwards
    x = torch.linalg.cross(up.expand_as(z), z, dim=-1)
    if bool((x.norm(dim=-1) < 1e-6).any()):
        raise ValueError("look_at: the viewing direction is parallel to `up` (or eye == target)")
    x = F.normalize(x, dim=-1)
    y = torch.linalg.cross(z, x, dim=-1)
    c2w = torch.zeros(*z.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = x, y, z, eye
    c2w[..., 3, 3] = 1.0
    return c2w


def orbit_camera(azimuth, elevation, radius=DEFAULT_RADIUS) -> torch.Tensor:
    """Camera-to-world ``(..., 4, 4)`` on a sphere of ``radius`` around the origin, looking at it.
    ``azimuth``, ``elevation`` in radians (floats or tensors of one shape ``(...)``): the camera
    sits at ``radius * (cos(el) sin(az), sin(el), cos(el) cos(az))``."""
    azimuth = _as_tensor(azimuth)
    elevation, radius = _as_tensor(elevation, azimuth), _as_tensor(radius, azimuth)
    if bool((elevation.abs() >= math.pi / 2 - 1e-6).any()):
        raise ValueError("orbit_camera: |elevation| must be below pi/2 radians (90 degrees)")
    eye = radius[..., None] * torch.stack([elevation.cos() * azimuth.sin(), elevation.sin(),
                                           elevation.cos() * azimuth.cos()], dim=-1)  # (..., 3)
    return look_at(eye)


def sample_cameras(views: int, seed: int, config: CameraConfig = CameraConfig()) -> dict:
    """``views`` random cameras drawn from ``seed`` (int) by ``config``: dict of ``azimuth (V,)``
    in [0, 2 pi), ``elevation (V,)`` radians, ``c2w (V, 4, 4)``, all float32."""
    if not isinstance(views, int) or views < 1:
        raise ValueError(f"views must be a positive int, got {views!r}")
    rng = np.random.default_rng(int(seed))
    if config.stratified:
        azimuth = (rng.random() + np.arange(views) / views) * 2 * np.pi
    else:
        azimuth = rng.random(views) * 2 * np.pi
    azimuth = np.mod(azimuth, 2 * np.pi)
    elevation = np.radians(rng.uniform(*config.elevation_degrees, size=views))
    azimuth_t = torch.tensor(azimuth, dtype=torch.float32)
    elevation_t = torch.tensor(elevation, dtype=torch.float32)
    return {"azimuth": azimuth_t, "elevation": elevation_t,
            "c2w": orbit_camera(azimuth_t, elevation_t, float(config.radius))}


def camera_rays(c2w: torch.Tensor, height: int, width: int, fov_degrees: float = DEFAULT_FOV):
    """Rays through pixel centres: ``(origins, directions)``, each ``(B, H, W, 3)`` in world
    coordinates (``(H, W, 3)`` for a single ``(4, 4)`` camera); directions have unit length."""
    if not isinstance(c2w, torch.Tensor) or c2w.shape[-2:] != (4, 4) or c2w.dim() not in (2, 3):
        raise ValueError(f"c2w must be a (4, 4) or (B, 4, 4) tensor, got "
                         f"{getattr(c2w, 'shape', type(c2w).__name__)}")
    if not 0 < fov_degrees < 180:
        raise ValueError(f"fov_degrees must be in (0, 180), got {fov_degrees}")
    single = c2w.dim() == 2
    c2w = c2w[None] if single else c2w                                  # (B, 4, 4)
    tan_x = math.tan(math.radians(fov_degrees) / 2)
    tan_y = tan_x * height / width
    kw = {"dtype": c2w.dtype, "device": c2w.device}
    u = ((torch.arange(width, **kw) + 0.5) / width * 2 - 1) * tan_x     # (W,)
    v = (1 - (torch.arange(height, **kw) + 0.5) / height * 2) * tan_y   # (H,)
    vv, uu = torch.meshgrid(v, u, indexing="ij")                        # (H, W)
    local = torch.stack([uu, vv, -torch.ones_like(uu)], dim=-1)         # (H, W, 3) camera frame
    directions = torch.einsum("bij,hwj->bhwi", c2w[:, :3, :3], local)   # (B, H, W, 3)
    directions = directions / _length(directions)[..., None]            # unit length
    origins = c2w[:, None, None, :3, 3].expand_as(directions)           # (B, H, W, 3)
    return (origins[0], directions[0]) if single else (origins, directions)


def _box_entry_exit(origins, directions, lo, hi):
    """Distances ``(N,)`` where rays enter/leave the box [lo, hi] (enter > exit: a miss)."""
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t1, t2 = (lo - origins) / safe, (hi - origins) / safe               # (N, 3)
    enter = torch.minimum(t1, t2).amax(dim=-1).clamp(min=0)
    return enter, torch.maximum(t1, t2).amin(dim=-1)


def sphere_trace(shape: Shape, origins: torch.Tensor, directions: torch.Tensor,
                 max_steps: int = 64, eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """March rays ``origins, directions: (N, 3)`` (unit directions) to the surface of ``shape``:
    returns ``t (N,)`` (the hit is at ``origins + t * directions``) and ``hit (N,)`` bool.
    Each step advances by the SDF (safe: it never exceeds the true distance); only rays still
    marching are evaluated."""
    packed = _pack(shape.parts, origins)
    lo, hi = (torch.as_tensor(b, dtype=origins.dtype, device=origins.device) for b in shape.bounds())
    margin = 0.01                                                       # start outside the object
    lo, hi = (lo - margin).clamp(min=-SCENE_BOUND), (hi + margin).clamp(max=SCENE_BOUND)
    t, t_exit = _box_entry_exit(origins, directions, lo, hi)
    hit = torch.zeros_like(t, dtype=torch.bool)
    active = (t < t_exit).nonzero().squeeze(1)                          # ray indices still going
    dist = torch.zeros(0, dtype=t.dtype, device=t.device)
    for _ in range(max_steps):
        if active.numel() == 0:
            break
        points = origins[active] + t[active, None] * directions[active]  # (M, 3)
        dist = _part_sdf_packed(packed, points).amin(dim=1)             # (M,)
        t[active] += dist
        reached = dist < eps
        hit[active[reached]] = True
        keep = ~reached & (t[active] < t_exit[active])
        active, dist = active[keep], dist[keep]
    hit[active[dist < 10 * eps]] = True                                 # out of steps but close
    return t, hit


def _normals(packed: dict, points: torch.Tensor, h: float = 1e-3) -> torch.Tensor:
    """Unit SDF gradients ``(N, 3)`` at ``points: (N, 3)`` by central differences."""
    offsets = torch.cat([torch.eye(3), -torch.eye(3)]).to(points) * h   # (6, 3)
    probes = (points[:, None, :] + offsets).reshape(-1, 3)              # (N * 6, 3)
    d = _part_sdf_packed(packed, probes).amin(dim=1).reshape(-1, 6)     # (N, 6)
    gradient = d[:, :3] - d[:, 3:]                                      # (N, 3)
    return gradient / _length(gradient).clamp(min=1e-12)[:, None]


def render_shape(shape: Shape, c2w: torch.Tensor, size=32, fov_degrees: float = DEFAULT_FOV,
                 supersample: int = 1, background: float = 1.0) -> torch.Tensor:
    """Render ``shape`` from ``c2w: (4, 4)`` or ``(B, 4, 4)``: RGB ``(3, H, W)`` or ``(B, 3, H, W)``
    in [0, 1] on a ``background`` grey level (white). ``size``: int or ``(H, W)``;
    ``supersample``: rays per pixel side, averaged (anti-aliasing)."""
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"supersample must be a positive int, got {supersample!r}")
    single = isinstance(c2w, torch.Tensor) and c2w.dim() == 2
    origins, directions = camera_rays(c2w[None] if single else c2w, height * supersample,
                                      width * supersample, fov_degrees)  # (B, H', W', 3)
    batch = origins.shape[0]
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)  # (N, 3)
    t, hit = sphere_trace(shape, origins, directions)
    image = torch.full_like(origins, float(background))                # (N, 3)
    idx = hit.nonzero().squeeze(1)
    if idx.numel():
        packed = _pack(shape.parts, origins)
        points = origins[idx] + t[idx, None] * directions[idx]          # (M, 3)
        albedo = packed["color"][_part_sdf_packed(packed, points).argmin(dim=1)]  # (M, 3)
        light = c2w.reshape(-1, 4, 4)[:, :3, :3] @ torch.tensor(LIGHT_IN_CAMERA).to(origins)
        light = F.normalize(light, dim=-1)                              # (B, 3) world
        rays_per_view = origins.shape[0] // batch
        lambert = (_normals(packed, points) * light[idx // rays_per_view]).sum(-1).clamp(min=0)
        image[idx] = albedo * (AMBIENT + (1 - AMBIENT) * lambert[:, None])
    image = image.reshape(batch, height * supersample, width * supersample, 3).permute(0, 3, 1, 2)
    if supersample > 1:
        image = F.avg_pool2d(image, supersample)                        # (B, 3, H, W)
    return image[0] if single else image
