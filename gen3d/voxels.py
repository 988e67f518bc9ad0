"""Voxel grids of procedural shapes: occupancy and signed distance on the world cube [-1, 1]^3.

Axis order (as everywhere in ``gen3d``): a grid ``vox: (1, R, R, R)`` is indexed
``vox[0, k, j, i]`` and that cell's centre is ``(x_i, y_j, z_k)`` with ``x_i = -1 + (2 i + 1) / R``:
index ``(k, j, i) <-> (z, y, x)``, so ``D = z``, ``H = y``, ``W = x``. A part at +x fills cells
with large ``i`` (the last axis), +y large ``j``, +z large ``k`` (the first spatial axis).

Because the cells are centred like ``align_corners=False``, world ``(x, y, z)`` are directly the
coordinates ``torch.nn.functional.grid_sample`` takes for a ``(B, C, D, H, W)`` grid.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gen3d.shapes import Shape, shape_sdf

__all__ = ["cell_centers", "world_to_grid", "grid_to_world", "voxelize", "sdf_grid"]

_CHUNK = 16384  # points per distance evaluation (bounds the (N, P, 3) temporaries)


def _check_resolution(resolution) -> int:
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    return resolution


def cell_centers(resolution: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """World ``(x, y, z)`` of every cell centre: ``(R, R, R, 3)`` indexed ``[k, j, i]``."""
    r = _check_resolution(resolution)
    axis = -1 + (2 * torch.arange(r, device=device, dtype=dtype) + 1) / r   # (R,)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")               # each (R, R, R)
    return torch.stack([x, y, z], dim=-1)                                   # (R, R, R, 3)


def world_to_grid(points: torch.Tensor, resolution: int) -> torch.Tensor:
    """World ``points: (..., 3)`` as ``(x, y, z)`` -> continuous cell indices ``(..., 3)`` in index
    order ``(k, j, i)``; a cell centre maps to whole numbers (round to look the cell up)."""
    r = _check_resolution(resolution)
    if points.shape[-1:] != (3,):
        raise ValueError(f"points must have shape (..., 3), got {tuple(points.shape)}")
    index_xyz = ((points + 1) * r - 1) / 2                                  # (..., 3) as (i, j, k)
    return index_xyz.flip(-1)                                               # (..., 3) as (k, j, i)


def grid_to_world(indices: torch.Tensor, resolution: int) -> torch.Tensor:
    """Cell indices ``(..., 3)`` in order ``(k, j, i)`` (ints or floats) -> world ``(..., 3)`` as
    ``(x, y, z)``; the inverse of :func:`world_to_grid`."""
    r = _check_resolution(resolution)
    if indices.shape[-1:] != (3,):
        raise ValueError(f"indices must have shape (..., 3), got {tuple(indices.shape)}")
    if not indices.is_floating_point():
        indices = indices.to(torch.get_default_dtype())
    return -1 + (2 * indices.flip(-1) + 1) / r                              # (..., 3) as (x, y, z)


def _sdf_chunked(shape: Shape, points: torch.Tensor) -> torch.Tensor:
    """``shape_sdf`` of ``points: (N, 3)`` in chunks: ``(N,)``."""
    return torch.cat([shape_sdf(shape, chunk) for chunk in points.split(_CHUNK)]) \
        if points.shape[0] else points.new_zeros(0)


def sdf_grid(shape: Shape, resolution: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Signed distance at every cell centre: ``(1, R, R, R)`` (negative inside; world units)."""
    centers = cell_centers(resolution, device=device, dtype=dtype).reshape(-1, 3)  # (R^3, 3)
    return _sdf_chunked(shape, centers).reshape(1, resolution, resolution, resolution)


def voxelize(shape: Shape, resolution: int, supersample: int = 4, threshold: float | None = None,
             device=None, dtype=torch.float32, sdf: torch.Tensor | None = None,
             keep_thin: bool = False) -> torch.Tensor:
    """Occupancy ``(1, R, R, R)``: the fraction in [0, 1] of each cell inside ``shape``, estimated
    with ``supersample^3`` regular samples per cell; with ``threshold`` the {0, 1} grid
    ``fraction >= threshold``. ``sdf``: optionally ``sdf_grid(shape, R)`` already computed.

    ``keep_thin`` (needs ``threshold``): a cell is occupied when any of its 8 octants is
    ``threshold`` full, i.e. the 2x2x2 max-pool of the {0, 1} grid at ``2 R``. Parts thinner than
    a cell (a lamp's pole at R = 16) then survive, at the price of shapes up to half a cell fatter.

    Only cells the surface may cross are supersampled: since |sdf| never exceeds the true
    distance, a cell whose centre is further than half its diagonal from the surface is uniform.
    """
    r = _check_resolution(resolution)
    if not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"supersample must be a positive int, got {supersample!r}")
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    if keep_thin:
        if threshold is None:
            raise ValueError("voxelize: keep_thin=True needs a threshold")
        fine = voxelize(shape, 2 * r, max(1, (supersample + 1) // 2), threshold, device, dtype)
        return F.max_pool3d(fine[None], 2)[0]                              # (1, R, R, R)
    centers = cell_centers(r, device=device, dtype=dtype).reshape(-1, 3)   # (R^3, 3)
    if sdf is None:
        sdf = _sdf_chunked(shape, centers)                                 # (R^3,)
    elif sdf.shape != (1, r, r, r):
        raise ValueError(f"sdf must have shape (1, {r}, {r}, {r}), got {tuple(sdf.shape)}")
    else:
        sdf = sdf.reshape(-1).to(device=centers.device, dtype=dtype)       # (R^3,)
    fraction = (sdf < 0).to(dtype)                                         # (R^3,)
    boundary = (sdf.abs() <= math.sqrt(3) / r).nonzero().squeeze(1)        # cells to refine
    if supersample > 1 and boundary.numel():
        s = supersample
        steps = ((torch.arange(s, device=device, dtype=dtype) + 0.5) / s - 0.5) * (2 / r)  # (s,)
        dz, dy, dx = torch.meshgrid(steps, steps, steps, indexing="ij")
        offsets = torch.stack([dx, dy, dz], dim=-1).reshape(-1, 3)         # (s^3, 3)
        samples = centers[boundary, None, :] + offsets                     # (M, s^3, 3)
        inside = _sdf_chunked(shape, samples.reshape(-1, 3)) < 0           # (M * s^3,)
        fraction[boundary] = inside.reshape(-1, s ** 3).to(dtype).mean(dim=1)
    fraction = fraction.reshape(1, r, r, r)                                # (1, R, R, R) = (1, D, H, W)
    if threshold is not None:
        fraction = (fraction >= threshold).to(dtype)
    return fraction
