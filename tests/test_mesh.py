"""gen3d.mesh: axis order, orientation, closed surfaces, export round trips."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gen3d.mesh import export_mesh, extract_mesh


def _coords(r):
    """World (x, y, z) of the cell centres of an r^3 grid, each (r, r, r) indexed (k, j, i)."""
    c = (np.arange(r) + 0.5) / r * 2 - 1
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return x, y, z


def _ball(r=16, center=(0.0, 0.0, 0.0), radius=0.35):
    x, y, z = _coords(r)
    d = np.sqrt((x - center[0]) ** 2 + (y - center[1]) ** 2 + (z - center[2]) ** 2)
    return (d < radius).astype(np.float32), (d - radius).astype(np.float32)


def _signed_volume(verts, faces):
    tri = verts[faces].astype(np.float64)  # (F, 3, 3)
    return np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_blob_lands_on_the_right_axis(axis):
    center = [0.0, 0.0, 0.0]
    center[axis] = 0.5  # +x, +y or +z
    occ, _ = _ball(center=tuple(center), radius=0.3)
    verts, faces = extract_mesh(torch.from_numpy(occ)[None])  # (1, D, H, W) accepted
    assert verts.dtype == np.float32 and faces.dtype == np.int64
    assert (verts[:, axis] > 0).all()
    others = [a for a in range(3) if a != axis]
    assert np.abs(verts[:, others].mean(0)).max() < 0.05
    assert verts[:, axis].mean() == pytest.approx(0.5, abs=0.05)


def test_faces_point_outwards_for_occupancy_and_sdf():
    occ, sdf = _ball(radius=0.5)
    for grid, kwargs in ((occ, {}), (sdf, {"level": 0.0, "inside": "below"})):
        verts, faces = extract_mesh(grid, **kwargs)
        volume = _signed_volume(verts, faces)
        assert volume == pytest.approx(4 / 3 * np.pi * 0.5**3, rel=0.15)  # > 0: outward normals


def test_border_shapes_are_closed_and_bounds_scale():
    verts, faces = extract_mesh(np.ones((4, 4, 4)), bounds=(0.0, 2.0))
    assert verts.min() == pytest.approx(0.0) and verts.max() == pytest.approx(2.0)
    assert _signed_volume(verts, faces) > 0


def test_no_surface_raises():
    with pytest.raises(ValueError, match="no surface at level 0.5"):
        extract_mesh(np.zeros((8, 8, 8)))
    with pytest.raises(ValueError, match="grid must be"):
        extract_mesh(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="inside"):
        extract_mesh(np.ones((4, 4, 4)), inside="up")


@pytest.mark.parametrize("ext", [".obj", ".ply", ".glb"])
def test_export_round_trip(tmp_path, ext):
    import trimesh

    verts, faces = extract_mesh(_ball()[0])
    colors = np.tile([[1.0, 0.0, 0.0]], (len(verts), 1))
    path = export_mesh(verts, faces, tmp_path / f"ball{ext}", colors=colors)
    assert path.exists() and not list(tmp_path.glob(".*.tmp"))
    mesh = trimesh.load(path, force="mesh", process=False)
    assert len(mesh.faces) == len(faces)
    assert np.allclose(np.sort(mesh.vertices, axis=0), np.sort(verts, axis=0), atol=1e-5)


def test_export_rejects_bad_input(tmp_path):
    verts, faces = extract_mesh(_ball()[0])
    with pytest.raises(ValueError, match="must end in"):
        export_mesh(verts, faces, tmp_path / "ball.stl")
    with pytest.raises(ValueError, match="faces index"):
        export_mesh(verts, faces + len(verts), tmp_path / "ball.obj")
    with pytest.raises(ValueError, match="colors"):
        export_mesh(verts, faces, tmp_path / "ball.ply", colors=np.ones((2, 3)))
