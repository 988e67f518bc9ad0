"""Meshes from voxel / SDF grids (marching cubes) and export to .obj / .ply / .glb.

Grids follow the voxel convention of ``gen3d``: ``grid[k, j, i]`` is the cell whose centre is
``(x_i, y_j, z_k)`` with ``x_i = lo + (i + 0.5) * (hi - lo) / W`` (and alike for y, z), so
index ``(k, j, i) <-> (z, y, x)``. Vertices come back in world ``(x, y, z)``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = ["extract_mesh", "export_mesh", "MESH_FORMATS"]

MESH_FORMATS = (".obj", ".ply", ".glb")


def _as_grid(grid) -> np.ndarray:
    """(D, H, W) or (1, D, H, W) tensor/array -> float64 (D, H, W) numpy array."""
    arr = grid.detach().cpu().double().numpy() if torch.is_tensor(grid) else np.asarray(grid, float)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]  # (D, H, W)
    if arr.ndim != 3:
        raise ValueError(f"grid must be (D, H, W) or (1, D, H, W), got shape {arr.shape}")
    if min(arr.shape) < 2:
        raise ValueError(f"grid must have at least 2 cells along every axis, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("grid contains NaN or infinite values")
    return arr


def extract_mesh(grid, level: float = 0.5, bounds: tuple[float, float] = (-1.0, 1.0),
                 inside: str = "above") -> tuple[np.ndarray, np.ndarray]:
    """Triangle mesh of the ``level`` set of a grid, by marching cubes (scikit-image).

    grid: (D, H, W) or (1, D, H, W) values per cell, index ``(k, j, i) <-> (z, y, x)``;
        occupancy in [0, 1] (use ``level=0.5, inside="above"``, the defaults) or a signed
        distance, negative inside (use ``level=0.0, inside="below"``).
    bounds: ``(lo, hi)``, the world extent of the grid along every axis (cell edges).
    Returns ``verts (V, 3)`` float32 world ``(x, y, z)`` and ``faces (F, 3)`` int64 vertex
    indices, wound counter-clockwise seen from outside (normals point out of the shape).
    The grid is padded by one "outside" cell, so shapes touching the border come out closed.
    Raises ``ValueError("no surface at level ...")`` when the grid never crosses ``level``.
    """
    from skimage.measure import marching_cubes

    if inside not in ("above", "below"):
        raise ValueError(f"inside must be 'above' (occupancy) or 'below' (SDF), got {inside!r}")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not hi > lo:
        raise ValueError(f"bounds must be (lo, hi) with hi > lo, got {bounds}")
    arr = _as_grid(grid)
    has_inside = arr.max() > level if inside == "above" else arr.min() < level
    if not has_inside:
        raise ValueError(f"no surface at level {level}: the grid's values span "
                         f"[{arr.min():.4g}, {arr.max():.4g}], no cell is {inside} the level")
    # 1. pad with a value outside the shape (the inside extreme mirrored about the level), so
    #    the surface closes at the border; for occupancy in {0, 1} that pad value is 0
    if inside == "above":
        outside = min(arr.min(), 2 * level - arr.max())
    else:
        outside = max(arr.max(), 2 * level - arr.min())
    padded = np.pad(arr, 1, constant_values=outside)  # (D+2, H+2, W+2)
    # 2. marching cubes in index space: verts are (k, j, i) positions of the padded grid
    direction = "descent" if inside == "above" else "ascent"
    verts, faces, _, _ = marching_cubes(padded, level=level, gradient_direction=direction)
    # 3. index (k, j, i) -> world (x, y, z): undo the padding, then cell centres -> world
    cell = (hi - lo) / np.array(arr.shape[::-1], dtype=np.float64)  # (3,) sizes along x, y, z
    xyz = lo + (verts[:, ::-1] - 1 + 0.5) * cell  # (V, 3) world (x, y, z)
    # (skimage's winding, read in (k, j, i) order, is inward; the reversal to (x, y, z) is a
    #  mirror, so the faces come out wound counter-clockwise seen from outside)
    return xyz.astype(np.float32), np.ascontiguousarray(faces, dtype=np.int64)


def _vertex_colors(colors, n_verts: int) -> np.ndarray:
    """(3,), (4,), (V, 3) or (V, 4) colours, floats in [0, 1] or uint8 -> (V, 4) uint8."""
    c = colors.detach().cpu().numpy() if torch.is_tensor(colors) else np.asarray(colors)
    if c.ndim == 1:
        c = np.broadcast_to(c, (n_verts, c.shape[0]))
    if c.ndim != 2 or c.shape[0] != n_verts or c.shape[1] not in (3, 4):
        raise ValueError(f"colors must be (3,), (4,), (V, 3) or (V, 4) with V = {n_verts}, "
                         f"got shape {c.shape}")
    if c.dtype != np.uint8:
        if c.min() < 0 or c.max() > 1:
            raise ValueError("float colors must lie in [0, 1] (or pass uint8 in [0, 255])")
        c = np.round(c * 255).astype(np.uint8)
    if c.shape[1] == 3:
        c = np.concatenate([c, np.full((n_verts, 1), 255, np.uint8)], axis=1)  # (V, 4)
    return c


def export_mesh(verts, faces, path, colors=None) -> Path:
    """Write a triangle mesh to ``path``; the format follows the extension (.obj, .ply, .glb).

    verts: (V, 3) world coordinates; faces: (F, 3) vertex indices in [0, V);
    colors: optional per-vertex (V, 3|4) or single (3|4,) colour, floats in [0, 1] or uint8.
    The file is written to a temporary name and renamed, so a reader never sees half a file.
    Returns the path.
    """
    import trimesh

    path = Path(path)
    if path.suffix.lower() not in MESH_FORMATS:
        raise ValueError(f"path must end in one of {MESH_FORMATS}, got {path.name!r}")
    v = verts.detach().cpu().numpy() if torch.is_tensor(verts) else np.asarray(verts)
    f = faces.detach().cpu().numpy() if torch.is_tensor(faces) else np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0:
        raise ValueError(f"verts must be a non-empty (V, 3) array, got shape {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0:
        raise ValueError(f"faces must be a non-empty (F, 3) array, got shape {f.shape}")
    if f.min() < 0 or f.max() >= v.shape[0]:
        raise ValueError(f"faces index vertices outside [0, {v.shape[0]}): "
                         f"[{int(f.min())}, {int(f.max())}]")
    vc = None if colors is None else _vertex_colors(colors, v.shape[0])
    mesh = trimesh.Trimesh(vertices=v.astype(np.float64), faces=f.astype(np.int64),
                           vertex_colors=vc, process=False)
    data = mesh.export(file_type=path.suffix.lower()[1:])
    data = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
