"""gen3d.render_data: camera frames, rays through pixel centres, and what renders show where."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gen3d.render_data import (CameraConfig, camera_rays, look_at, orbit_camera, render_shape,
                               sample_cameras, sphere_trace)
from gen3d.shapes import CATEGORIES, Primitive, Shape, make_shape

RED, BLUE, GREY = (0.9, 0.05, 0.05), (0.05, 0.05, 0.9), (0.5, 0.5, 0.5)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def magenta_pixels(image):
    """Number of pixels of ``image: (3, H, W)`` that look like the front emblem."""
    r, g, b = image
    return int(((torch.minimum(r, b) - g) > 0.25).sum())


# ----------------------------------------------------------------------------- cameras
def test_look_at_from_plus_z_is_identity_rotation():
    c2w = look_at(torch.tensor([0.0, 0.0, 3.0]))
    torch.testing.assert_close(c2w[:3, :3], torch.eye(3))
    torch.testing.assert_close(c2w[:3, 3], torch.tensor([0.0, 0.0, 3.0]))
    torch.testing.assert_close(c2w[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_orbit_camera_positions_and_frames():
    r = 2.5
    c2w = orbit_camera(torch.tensor([0.0, math.pi / 2, math.pi]), torch.zeros(3), r)
    eyes = c2w[:, :3, 3]
    torch.testing.assert_close(eyes, torch.tensor([[0, 0, r], [r, 0, 0], [0, 0, -r]]),
                               atol=1e-6, rtol=0)
    forward = -c2w[:, :3, 2]                                            # camera looks down -z
    torch.testing.assert_close(forward, -eyes / r, atol=1e-6, rtol=0)
    rot = c2w[:, :3, :3]
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3).expand(3, 3, 3),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(3))
    assert orbit_camera(0.0, math.radians(30), r)[1, 3] > 0              # above: +y
    assert (c2w[:, 1, 1] > 0).all()                                     # camera up is world up
    with pytest.raises(ValueError, match="elevation"):
        orbit_camera(0.0, math.pi / 2)


def test_camera_rays_through_pixel_centres():
    c2w = look_at(torch.tensor([0.0, 0.0, 3.0]))                        # camera frame = world
    origins, dirs = camera_rays(c2w, 2, 4, fov_degrees=90.0)            # tan(45) = 1
    assert origins.shape == dirs.shape == (2, 4, 3)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(2, 4))
    # pixel (row 0, col 0): ndc (-0.75, 0.5); tan(fov_x / 2) = 1, tan(fov_y / 2) = 1 * H / W
    expected = torch.tensor([-0.75, 0.25, -1.0])
    torch.testing.assert_close(dirs[0, 0], expected / expected.norm())
    assert (dirs[0, :, 1] > 0).all() and (dirs[1, :, 1] < 0).all()     # row 0 is the top
    assert (dirs[:, :2, 0] < 0).all() and (dirs[:, 2:, 0] > 0).all()    # column 0 is the left
    batch_o, batch_d = camera_rays(c2w[None].repeat(3, 1, 1), 2, 4, 90.0)
    assert batch_d.shape == (3, 2, 4, 3)
    torch.testing.assert_close(batch_d[2], dirs)


def test_sample_cameras_is_seeded_and_stratified():
    config = CameraConfig(elevation_degrees=(-10.0, 40.0), radius=3.0)
    a, b, c = sample_cameras(8, 5, config), sample_cameras(8, 5, config), sample_cameras(8, 6, config)
    torch.testing.assert_close(a["c2w"], b["c2w"])
    assert not torch.allclose(a["azimuth"], c["azimuth"])
    assert ((a["azimuth"] >= 0) & (a["azimuth"] < 2 * math.pi)).all()
    el = torch.rad2deg(a["elevation"])
    assert ((el >= -10) & (el <= 40)).all()
    assert int((a["azimuth"].cos() > 0).sum()) == 4                     # half see the front
    torch.testing.assert_close(a["c2w"], orbit_camera(a["azimuth"], a["elevation"], 3.0))
    torch.testing.assert_close(a["c2w"][:, :3, 3].norm(dim=-1), torch.full((8,), 3.0))


# ----------------------------------------------------------------------------- renders
def test_sphere_trace_hits_a_sphere_at_the_right_distance():
    sphere = Shape("t", 0, (Primitive("sphere", (0, 0, 0), (0.5,) * 3, GREY, "s"),))
    origins = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 3.0]])
    dirs = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    t, hit = sphere_trace(sphere, origins, dirs)
    assert hit.tolist() == [True, False]
    assert abs(float(t[0]) - 2.5) < 2e-3


def test_plus_x_is_right_and_plus_y_is_top_from_azimuth_zero():
    shape = Shape("t", 0, (Primitive("box", (0.5, 0, 0), (0.2,) * 3, RED, "x"),
                           Primitive("box", (0, 0.5, 0), (0.2,) * 3, BLUE, "y")))
    image = render_shape(shape, orbit_camera(0.0, 0.0), 32)             # (3, H, W)
    assert image.shape == (3, 32, 32)
    red = (image[0] > 0.3) & (image[2] < 0.2)
    blue = (image[2] > 0.3) & (image[0] < 0.2)
    rows, cols = torch.arange(32.0)[:, None], torch.arange(32.0)[None, :]
    assert red.sum() > 10 and blue.sum() > 10
    assert (cols * red).sum() / red.sum() > 20                          # right half
    assert abs(float((rows * red).sum() / red.sum()) - 15.5) < 2
    assert (rows * blue).sum() / blue.sum() < 11                        # top half
    assert abs(float((cols * blue).sum() / blue.sum()) - 15.5) < 2
    assert (image[:, 0, 0] == 1).all()                                  # white background
    # from azimuth 90 (camera on +x) the +x part is in front and in the middle
    side = render_shape(shape, orbit_camera(math.pi / 2, 0.0), 32)
    red = (side[0] > 0.3) & (side[2] < 0.2)
    assert abs(float((cols * red).sum() / red.sum()) - 15.5) < 2


@pytest.mark.parametrize("category", CATEGORIES)
def test_front_emblem_seen_from_the_front_only(category):
    for seed in range(3):
        shape = make_shape(category, seed)
        az = torch.tensor([0.0, 45.0, -45.0, 180.0, 135.0, 225.0]).deg2rad()
        images = render_shape(shape, orbit_camera(az, torch.full((6,), math.radians(10))), 32)
        counts = [magenta_pixels(im) for im in images]
        assert counts[0] >= 2 and counts[1] >= 1 and counts[2] >= 1, (seed, counts)
        assert counts[3] == counts[4] == counts[5] == 0, (seed, counts)
        assert (images >= 0).all() and (images <= 1).all()


def test_batch_supersample_and_device(device):
    shape = make_shape("car", 1)
    c2w = orbit_camera(torch.tensor([0.3, 2.0]), torch.tensor([0.2, 0.5])).to(device)
    batch = render_shape(shape, c2w, (16, 24), supersample=2)
    assert batch.shape == (2, 3, 16, 24) and batch.device == c2w.device
    single = render_shape(shape, c2w[1], (16, 24), supersample=2)
    torch.testing.assert_close(single, batch[1], atol=1e-5, rtol=0)
    sharp = render_shape(shape, c2w[1], (16, 24))
    assert not torch.equal(sharp, single)                                # anti-aliased edges
    np.testing.assert_allclose(sharp.mean().item(), single.mean().item(), atol=0.03)
