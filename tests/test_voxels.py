"""gen3d.voxels: the (k, j, i) <-> (z, y, x) axis convention, occupancy fractions, SDF grids."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gen3d.shapes import CATEGORIES, Primitive, Shape, make_shape
from gen3d.voxels import cell_centers, grid_to_world, sdf_grid, voxelize, world_to_grid

GREY = (0.5, 0.5, 0.5)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def box(center, half):
    return Shape("test", 0, (Primitive("box", center, half, GREY, "box"),))


def test_cell_centers_hand_computed():
    c = cell_centers(2)
    assert c.shape == (2, 2, 2, 3)
    # [k, j, i] = (x_i, y_j, z_k) with x_i = -1 + (2 i + 1) / R
    torch.testing.assert_close(c[0, 0, 1], torch.tensor([0.5, -0.5, -0.5]))
    torch.testing.assert_close(c[0, 1, 0], torch.tensor([-0.5, 0.5, -0.5]))
    torch.testing.assert_close(c[1, 0, 0], torch.tensor([-0.5, -0.5, 0.5]))
    c4 = cell_centers(4, dtype=torch.float64)
    assert c4.dtype == torch.float64
    torch.testing.assert_close(c4[3, 2, 1], torch.tensor([-0.25, 0.25, 0.75], dtype=torch.float64))


def test_world_grid_round_trip():
    r = 8
    idx = torch.tensor([[0, 0, 0], [7, 3, 1], [2, 5, 6]])               # (k, j, i)
    world = grid_to_world(idx, r)
    torch.testing.assert_close(world[1], torch.tensor([-1 + 3 / 8, -1 + 7 / 8, -1 + 15 / 8]))
    torch.testing.assert_close(world_to_grid(world, r), idx.float())
    centers = cell_centers(r)
    torch.testing.assert_close(centers[7, 3, 1], world[1])
    torch.testing.assert_close(world_to_grid(torch.tensor([-1.0, 1.0, 0.0]), r),
                               torch.tensor([3.5, 7.5, -0.5]))         # cube faces -> cell edges


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_axis_convention(axis):
    """A part at +x fills large i (last axis), +y large j, +z large k (first spatial axis)."""
    center = [0.0, 0.0, 0.0]
    center[axis] = 0.6
    vox = voxelize(box(center, (0.2, 0.2, 0.2)), 10, threshold=0.5)[0]  # (D, H, W) = (z, y, x)
    filled = vox.nonzero().float().mean(0)                              # mean (k, j, i)
    index_axis = 2 - axis                                               # x -> i, y -> j, z -> k
    assert filled[index_axis] > 7                                       # 0.6 -> index 7.5
    for other in range(3):
        if other != index_axis:
            assert abs(filled[other] - 4.5) < 1e-6                      # centred elsewhere


def test_fractions_of_a_box_aligned_and_not():
    # aligned with cell boundaries at R = 4 (cells of side 0.5): exactly 2 x 2 x 2 full cells
    vox = voxelize(box((0.25, 0.25, 0.25), (0.25, 0.25, 0.25)), 4, supersample=4)
    assert vox.sum() == 1.0 and vox[0, 2, 2, 2] == 1.0
    vox = voxelize(box((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), 4, supersample=4)
    assert set(vox.unique().tolist()) == {0.0, 1.0} and vox.sum() == 8
    # a box half a cell off: half-full cells; total volume preserved
    shape = box((0.125, 0.0, 0.0), (0.25, 0.25, 0.25))                  # x in [-0.125, 0.375]
    vox = voxelize(shape, 4, supersample=4)
    assert torch.isclose(vox.sum() * 0.5 ** 3, torch.tensor(0.5 ** 3))
    # x: a quarter / three quarters of the cells' width, y and z: half of it
    assert vox[0, 1, 1, 1] == 0.25 * 0.5 * 0.5 and vox[0, 1, 1, 2] == 0.75 * 0.5 * 0.5


def test_threshold_and_uniform_cells_agree_with_the_sdf():
    shape = make_shape("chair", 2)
    r = 16
    frac = voxelize(shape, r, supersample=3)
    binary = voxelize(shape, r, supersample=3, threshold=0.5)
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(binary, (frac >= 0.5).float())
    sdf = sdf_grid(shape, r)
    half_diag = math.sqrt(3) / r
    assert (frac[sdf < -half_diag] == 1).all() and (frac[sdf > half_diag] == 0).all()
    torch.testing.assert_close(voxelize(shape, r, 3, sdf=sdf), frac)   # reusing the sdf


def test_sdf_grid_sampled_by_grid_sample_at_world_points():
    """World (x, y, z) are grid_sample coordinates (align_corners=False) of a (1, 1, D, H, W) grid."""
    shape = make_shape("lamp", 1)
    r = 12
    grid = sdf_grid(shape, r, dtype=torch.float64)                      # (1, R, R, R)
    idx = torch.tensor([[1, 5, 9], [10, 2, 7], [6, 6, 0]])              # (k, j, i)
    world = grid_to_world(idx, r).to(torch.float64)                    # (3, 3) xyz
    sampled = F.grid_sample(grid[None], world.view(1, 3, 1, 1, 3), align_corners=False)
    expected = grid[0, idx[:, 0], idx[:, 1], idx[:, 2]]
    torch.testing.assert_close(sampled.view(3), expected)


def test_keep_thin_preserves_a_thin_centred_rod():
    rod = Shape("t", 0, (Primitive("cylinder", (0, 0, 0), (0.1, 0.8, 0.1), GREY, "rod"),))
    plain = voxelize(rod, 8, threshold=0.5)                             # rod splits into 4 cells
    kept = voxelize(rod, 8, threshold=0.5, keep_thin=True)
    assert plain.sum() == 0
    assert kept[0, :, 1:7, 3:5].sum() == 2 * 6 * 2 and kept.sum() == kept[0, 3:5, 1:7, 3:5].sum()


def test_categories_separate_at_16_cubed():
    """A nearest-centroid classifier on 16^3 occupancy tells the categories apart."""
    def grids(seeds):
        return torch.stack([torch.stack([voxelize(make_shape(c, s), 16, 2, 0.5, keep_thin=True)
                                         for s in seeds]) for c in CATEGORIES])  # (C, S, 1, R, R, R)
    train, test = grids(range(6)), grids(range(100, 104))
    centroids = train.flatten(2).mean(1)                                # (C, R^3)
    d = torch.cdist(test.flatten(2).flatten(0, 1), centroids)           # (C * S, C)
    labels = torch.arange(len(CATEGORIES)).repeat_interleave(test.shape[1])
    assert (d.argmin(1) == labels).float().mean() >= 0.9


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="resolution"):
        cell_centers(0)
    with pytest.raises(ValueError, match="supersample"):
        voxelize(make_shape("car", 0), 8, supersample=0)
    with pytest.raises(ValueError, match="threshold"):
        voxelize(make_shape("car", 0), 8, threshold=1.5)
    with pytest.raises(ValueError, match="keep_thin"):
        voxelize(make_shape("car", 0), 8, keep_thin=True)
    with pytest.raises(ValueError, match="points"):
        world_to_grid(torch.zeros(3, 2), 8)
