"""gen3d.viz: orientation of plots and renders, shapes, ranges, files."""
from __future__ import annotations

import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from gen3d import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a busy 2-core machine two threads spin-wait on each other and small
    convolutions run tens of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _box(r=16, x=(-1, 1), y=(-1, 1), z=(-1, 1)):
    """(1, 1, r, r, r) occupancy of the cells whose centres lie in the given world box."""
    c = (torch.arange(r) + 0.5) / r * 2 - 1
    zz, yy, xx = torch.meshgrid(c, c, c, indexing="ij")  # each (r, r, r) indexed (k, j, i)
    inside = ((xx > x[0]) & (xx < x[1]) & (yy > y[0]) & (yy < y[1]) & (zz > z[0]) & (zz < z[1]))
    return inside.float()[None, None]


def _filled(image, background=1.0):
    """(3, H, W) render -> (H, W) bool mask of non-background pixels."""
    return (image - background).abs().amax(0) > 1e-3


def _centroid(mask):
    rows, cols = mask.nonzero(as_tuple=True)
    return rows.float().mean().item(), cols.float().mean().item()


def test_render_voxels_orientation_at_azimuth_zero():
    right = viz.render_voxels(_box(x=(0.3, 0.8), y=(-0.25, 0.25), z=(-0.25, 0.25)), 0.0, 0.0, size=32)
    top = viz.render_voxels(_box(x=(-0.25, 0.25), y=(0.3, 0.8), z=(-0.25, 0.25)), 0.0, 0.0, size=32)
    assert right.shape == (1, 3, 32, 32) and 0 <= right.min() and right.max() <= 1
    r_row, r_col = _centroid(_filled(right[0]))
    t_row, t_col = _centroid(_filled(top[0]))
    assert r_col > 20 and abs(r_row - 15.5) < 2  # +x is on the right
    assert t_row < 12 and abs(t_col - 15.5) < 2  # +y is at the top


def test_render_voxels_azimuth_turns_towards_plus_x():
    front = _box(x=(-0.25, 0.25), y=(-0.25, 0.25), z=(0.3, 0.8))  # a block at +z
    img = viz.render_voxels(front, math.pi / 2, 0.0, size=32)  # camera on +x: +z is on the left
    assert _centroid(_filled(img[0]))[1] < 12
    batch = viz.render_voxels(front.expand(2, -1, -1, -1, -1), torch.tensor([0.0, math.pi]), 0.0,
                              size=16)
    assert batch.shape == (2, 3, 16, 16)
    # a block at +z is nearer the camera at azimuth 0 than at azimuth pi: brighter depth cue
    assert batch[0][:, _filled(batch[0])].mean() > batch[1][:, _filled(batch[1])].mean()


def test_render_voxels_empty_is_background_and_rejects_bad_shape():
    img = viz.render_voxels(torch.zeros(2, 1, 8, 8, 8), size=8, background=0.5)
    assert torch.equal(img, torch.full((2, 3, 8, 8), 0.5))
    with pytest.raises(ValueError, match="vox must be"):
        viz.render_voxels(torch.zeros(8, 8, 8))


def test_render_voxels_keeps_device(device):
    img = viz.render_voxels(_box(x=(-0.5, 0.5)).to(device), size=8)
    assert img.device.type == device.type


def test_voxel_silhouettes_views():
    block = _box(r=8, x=(0.5, 1), y=(0.5, 1), z=(0.5, 1))[0, 0]  # cells at +x, +y, +z
    front, side, top = viz.voxel_silhouettes(block)
    assert front.shape == (8, 8)
    assert front[:2, -2:].all() and front.sum() == 4  # top right seen from +z
    assert side[:2, :2].all() and side.sum() == 4  # seen from +x, +z is on the left
    assert top[-2:, -2:].all() and top.sum() == 4  # seen from above, the front is at the bottom
    assert viz.voxel_silhouettes(torch.zeros(2, 1, 4, 4, 4)).shape == (2, 1, 3, 4, 4)


def test_make_grid_layout_and_ranges():
    images = torch.zeros(5, 3, 4, 6)
    images[1] = 1.0
    grid = viz.make_grid(images, nrow=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 7 + 1, 3)
    assert (grid[1:5, 8:14] == 1).all() and (grid[1:5, 1:7] == 0).all()
    signed = viz.make_grid(torch.full((1, 3, 2, 2), -1.0), value_range=(-1, 1), pad=0)
    assert (signed == 0).all()
    with pytest.raises(ValueError, match="images must be"):
        viz.make_grid(torch.zeros(3, 4, 4))


def test_figures_are_returned_and_saved(tmp_path):
    from matplotlib.figure import Figure

    fig = viz.image_grid(torch.rand(4, 3, 8, 8), nrow=2, save=tmp_path / "grid.png")
    assert isinstance(fig, Figure) and (tmp_path / "grid.png").stat().st_size > 0
    fig = viz.show_voxels(_box(r=6, x=(0, 1))[0], save=tmp_path / "vox.png")
    assert isinstance(fig, Figure) and (tmp_path / "vox.png").exists()
    fig = viz.voxel_grid_figure(_box(r=8).expand(3, -1, -1, -1, -1), nrow=3, size=16)
    assert isinstance(fig, Figure)
    fig = viz.plot_curves({"loss": [3.0, 2.0, 1.5, 1.0], "acc": [0.1, 0.5, 0.7, 0.9]}, smooth=2,
                          separate=True, save=tmp_path / "curves.pdf")
    assert len(fig.axes) == 2 and (tmp_path / "curves.pdf").exists()
    with pytest.raises(ValueError, match="history"):
        viz.plot_curves({})


def test_show_voxels_draws_into_given_axes():
    import matplotlib.pyplot as plt

    fig = plt.figure()
    ax = fig.add_subplot(projection="3d")
    assert viz.show_voxels(_box(r=4, y=(0, 1))[0, 0], ax=ax) is fig
    assert ax.get_zlabel() == "y"  # matplotlib's vertical axis shows world y
    plt.close(fig)


def test_turntable_gif(tmp_path):
    from PIL import Image

    frames = torch.rand(4, 3, 8, 8)
    path = viz.turntable_gif(frames, tmp_path / "spin.gif", fps=5, scale=2)
    with Image.open(path) as gif:
        assert gif.n_frames == 4 and gif.size == (16, 16)
    with pytest.raises(ValueError, match="frames"):
        viz.turntable_gif(torch.rand(4, 8, 8), tmp_path / "bad.gif")
