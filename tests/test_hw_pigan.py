"""Tests of gen3d.hw_pigan, the plumbing of topic 02, driven by the reference notebook's pieces.

The graded pieces come from ``solutions/02_pigan/pigan.ipynb`` through the kit's loader (no copy of a
solution lives here); the plumbing is checked with hand-computed cases and invariants.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gen3d import hw_pigan as hw
from gen3d.notebook import load_notebook, require

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "02_pigan" / "pigan.ipynb"
NAMES = ["get_rays", "stratified_depths", "volume_render", "sample_pdf", "hierarchical_depths", "FiLMSiren",
         "MappingNetwork", "look_at_origin", "sample_camera_poses", "r1_penalty"]


@pytest.fixture(scope="module")
def ref():
    module = load_notebook(NOTEBOOK, names=NAMES)
    require(module, NAMES)
    return module


@pytest.fixture(scope="module")
def renderer(ref):
    return hw.Renderer.from_namespace(ref)


def tiny_cfg(**changes) -> hw.PiGANConfig:
    base = dict(image_size=8, z_dim=8, hidden=16, n_siren=2, mapping_hidden=16, n_coarse=6, batch_size=2,
                steps=2, chunk_rays=64)
    base.update(changes)
    return hw.PiGANConfig(**base)


def make_generator(ref, renderer, cfg, device="cpu"):
    torch.manual_seed(0)
    field = hw.SirenField(ref.FiLMSiren, ref.MappingNetwork, cfg.z_dim, cfg.hidden, cfg.n_siren, cfg.mapping_hidden,
                          cfg.view_dependent, cfg.coord_scale)
    return hw.Generator(field, renderer, cfg).to(device)


class RampField(torch.nn.Module):
    """A stand-in field: sigma = relu(x) (density grows along +x), colour = position mapped to [0, 1]."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def film(self, z):
        return z[:, None, :1], z[:, None, :1]

    def query(self, points, directions, frequencies, phases):
        return torch.relu(points[..., 0]) * self.scale, (points * 0.5 + 0.5).clamp(0, 1)


# ----------------------------------------------------------------------------- small pieces
def test_psnr_hand_computed():
    a = torch.zeros(4, 3)
    assert hw.psnr(a + 0.1, a) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert hw.psnr(a, a) == float("inf")


def test_analytic_scene_rays_invariants():
    origins, directions, colors = hw.analytic_scene_rays(2000, torch.Generator().manual_seed(0), radius=3.0)
    assert origins.shape == directions.shape == colors.shape == (2000, 3)
    assert torch.allclose(origins.norm(dim=-1), torch.full((2000,), 3.0), atol=1e-5)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(2000), atol=1e-5)
    assert colors.min() >= 0 and colors.max() <= 1
    white = (colors == 1).all(-1)
    assert 0.05 < white.float().mean() < 0.95  # rays both hit and miss the two spheres
    # a ray that misses passes farther than 0.45 + 0.35 + 0.4 from the origin only if white
    closest = (origins - (origins * directions).sum(-1, keepdim=True) * directions).norm(dim=-1)
    assert white[closest > 0.9].all()


def test_discriminator_shapes_and_bad_size():
    for size in (8, 16, 32):
        disc = hw.Discriminator(size)
        assert disc(torch.zeros(3, 3, size, size)).shape == (3,)
    with pytest.raises(ValueError, match="power of two"):
        hw.Discriminator(12)


def test_dataset_cameras_recovers_angles(ref):
    az = torch.tensor([0.1, 1.0, 2.0])
    el = torch.tensor([-0.1, 0.2, 0.5])
    summary = hw.dataset_cameras(ref.look_at_origin(az, el, 2.5))
    assert summary["radius"] == pytest.approx((2.5, 2.5), abs=1e-5)
    assert summary["azimuth"] == pytest.approx((0.1, 2.0), abs=1e-5)
    assert summary["elevation"] == pytest.approx((-0.1, 0.5), abs=1e-5)


def test_views_to_rays_pairs_pixels_with_rays(ref):
    c2w = ref.look_at_origin(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.3]), 3.0)
    images = torch.rand(2, 3, 4, 5)
    origins, directions, colors = hw.views_to_rays(ref.get_rays, images, c2w, 40.0)
    assert origins.shape == directions.shape == colors.shape == (2 * 4 * 5, 3)
    # view 1, row 2, column 3 is flat index 1 * 20 + 2 * 5 + 3
    assert torch.equal(colors[33], images[1, :, 2, 3])
    assert torch.allclose(directions[33], ref.get_rays(c2w, 4, 5, 40.0)[1][1, 2, 3])


# ----------------------------------------------------------------------------- the pipeline
def test_render_rays_coarse_and_hierarchical(ref, renderer):
    field = RampField()
    field.scale.data.fill_(5.0)  # sigma = 5 relu(x): the second ray's optical depth is 5 * 2^2 / 2 = 10
    origins = torch.tensor([[[0.0, 0.0, 3.0], [3.0, 0.0, 0.0]]])  # (1, 2, 3)
    directions = torch.tensor([[[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]]])
    z = torch.zeros(1, 4)
    coarse = hw.render_rays(field, renderer, z, origins, directions, 1.0, 5.0, 8, 0, False, False)
    fine = hw.render_rays(field, renderer, z, origins, directions, 1.0, 5.0, 8, 16, False, False)
    assert coarse["depths"].shape == (1, 2, 8) and fine["depths"].shape == (1, 2, 24)
    # ray 0 stays at x = 0 (no density): transparent; ray 1 runs down the density ramp from x = 2
    assert coarse["opacity"][0, 0] == 0 and coarse["opacity"][0, 1] > 0.99
    # the fine pass concentrates samples where the second ray's weights are (x in [0, 2], t in [1, 3])
    extra = fine["depths"][0, 1]
    assert ((extra > 1.0) & (extra < 3.25)).sum() >= 16


def test_generator_forward_range_and_gradient(ref, renderer):
    cfg = tiny_cfg()
    gen = make_generator(ref, renderer, cfg)
    z = torch.randn(2, cfg.z_dim)
    c2w = ref.sample_camera_poses(2, cfg.radius, cfg.azimuth, cfg.elevation, generator=torch.Generator().manual_seed(0))
    images = gen(z, c2w, perturb=True, generator=torch.Generator().manual_seed(1))
    assert images.shape == (2, 3, 8, 8)
    assert images.min() >= -1 - 1e-6 and images.max() <= 1 + 1e-6
    images.mean().backward()
    grads = [p.grad for p in gen.field.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_bad_inputs_raise(ref, renderer):
    cfg = tiny_cfg()
    gen = make_generator(ref, renderer, cfg)
    c2w = ref.look_at_origin(torch.tensor([0.3, 2.0]), torch.tensor([0.1, 0.4]), cfg.radius)
    with pytest.raises(ValueError, match="z must be"):
        gen(torch.zeros(2, cfg.z_dim + 1), c2w)
    with pytest.raises(ValueError, match="c2w must be"):
        hw.render_image(gen, torch.zeros(3, cfg.z_dim), c2w)
    with pytest.raises(ValueError, match="images must be"):
        hw.train_gan(gen, hw.Discriminator(8), ref.sample_camera_poses, ref.r1_penalty, torch.zeros(4, 3, 16, 16), cfg)


def test_render_image_chunks_match_one_pass(ref, renderer):
    cfg = tiny_cfg(n_fine=4)
    gen = make_generator(ref, renderer, cfg)
    z = torch.randn(2, cfg.z_dim)
    c2w = ref.look_at_origin(torch.tensor([0.3, 2.0]), torch.tensor([0.1, 0.4]), cfg.radius)
    small = hw.render_image(gen, z, c2w, size=8, chunk_rays=10)
    whole = hw.render_image(gen, z, c2w, size=8, chunk_rays=10_000)
    assert small["image"].shape == (2, 3, 8, 8) and small["depth"].shape == (2, 8, 8)
    assert torch.allclose(small["image"], whole["image"], atol=1e-6)
    assert torch.allclose(small["depth"], whole["depth"], atol=1e-5)
    direct = gen(z, c2w, perturb=False)  # the same rays, rendered with gradient in one pass
    assert torch.allclose((direct + 1) / 2, whole["image"], atol=1e-5)


def test_density_grid_axis_order():
    grid = hw.density_grid(RampField(), torch.zeros(1, 4), resolution=4)
    x = torch.tensor([-0.75, -0.25, 0.25, 0.75])
    assert grid.shape == (4, 4, 4)
    assert torch.allclose(grid[2, 1], torch.relu(x))  # index (k, j, i) <-> (z, y, x): varies with i only
    assert torch.allclose(grid[:, :, 3], torch.full((4, 4), 0.75))


def test_turntable_frames(ref, renderer):
    cfg = tiny_cfg()
    gen = make_generator(ref, renderer, cfg)
    out = hw.turntable(gen, torch.randn(1, cfg.z_dim), ref.look_at_origin, n_frames=3, elevation=0.2)
    assert out["image"].shape == (3, 3, 8, 8) and out["depth"].shape == (3, 8, 8)
    assert torch.allclose(out["azimuth"], torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3]))


# ----------------------------------------------------------------------------- training loops
def test_fit_scene_improves_psnr(ref, renderer):
    g = torch.Generator().manual_seed(0)
    train, evaluation = hw.analytic_scene_rays(1024, g), hw.analytic_scene_rays(256, g)
    cfg = hw.FitConfig(hidden=32, n_siren=2, mapping_hidden=32, n_samples=12, rays_per_step=128, steps=30,
                       near=1.8, far=4.2, eval_every=15, lr=1e-3)  # the scene rays start at radius 3
    torch.manual_seed(0)
    field = hw.SirenField(ref.FiLMSiren, ref.MappingNetwork, cfg.z_dim, cfg.hidden, cfg.n_siren, cfg.mapping_hidden)
    before = hw.psnr(hw.render_flat(field, renderer, torch.zeros(1, cfg.z_dim), evaluation, cfg, "cpu"),
                     evaluation[2])
    history = hw.fit_scene(field, renderer, train, evaluation, cfg)
    assert history["step"] == [15, 30] and len(history["loss"]) == 30
    assert history["psnr"][-1] > before + 1.0


def test_train_gan_runs_and_keeps_an_ema(ref, renderer):
    images = torch.rand(6, 3, 8, 8) * 2 - 1
    for decay in (0.0, 1.0):  # EMA = the latest weights / the initial weights
        cfg = tiny_cfg(steps=2, ema_decay=decay)
        gen = make_generator(ref, renderer, cfg)
        start = [p.detach().clone() for p in gen.parameters()]
        history = hw.train_gan(gen, hw.Discriminator(8, width=8), ref.sample_camera_poses, ref.r1_penalty, images, cfg)
        for key in ("g_loss", "d_loss", "r1"):
            assert len(history[key]) == 2 and np.isfinite(history[key]).all()
        assert any(not torch.equal(a, p) for a, p in zip(start, gen.parameters()))
        ema = history["ema"]
        assert ema is not gen and not any(p.requires_grad for p in ema.parameters())
        target = list(gen.parameters()) if decay == 0.0 else start
        assert all(torch.allclose(e, t) for e, t in zip(ema.parameters(), target))


# ----------------------------------------------------------------------------- data
def write_fake_renders(folder: Path, n=3, views=2, size=32):
    images = np.zeros((n, views, 3, size, size), np.uint8)
    images[..., :size // 2, :] = 255  # top half white, bottom half black
    c2w = np.tile(np.eye(4, dtype=np.float32), (n, views, 1, 1))
    np.savez(folder / f"renders_{size}_train.npz", images=images, c2w=c2w, azimuth=np.zeros((n, views), np.float32),
             elevation=np.zeros((n, views), np.float32), labels=np.arange(n), front_visible=np.ones((n, views), bool),
             seeds=np.arange(n), fov_degrees=np.float64(40.0))


def test_load_images_downsamples_and_scales(tmp_path):
    write_fake_renders(tmp_path)
    full = hw.load_images(32, "train", data_dir=tmp_path)
    half = hw.load_images(16, "train", data_dir=tmp_path)
    assert full["images"].shape == (6, 3, 32, 32) and half["images"].shape == (6, 3, 16, 16)
    assert full["images"][0, 0, 0, 0] == 1 and full["images"][0, 0, -1, 0] == -1
    assert torch.allclose(half["images"].mean(), full["images"].mean())
    assert half["c2w"].shape == (6, 4, 4) and half["labels"].tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="size"):
        hw.load_images(24, "train", data_dir=tmp_path)


def test_load_object_views(tmp_path):
    write_fake_renders(tmp_path)
    views = hw.load_object_views(2, "train", data_dir=tmp_path)
    assert views["images"].shape == (2, 3, 32, 32) and views["label"] == 2
    assert views["images"].max() == 1 and views["fov_degrees"] == 40.0
    with pytest.raises(ValueError, match="index"):
        hw.load_object_views(3, "train", data_dir=tmp_path)


# ----------------------------------------------------------------------------- devices
def test_generator_on_device(ref, renderer, device):
    cfg = tiny_cfg()
    gen = make_generator(ref, renderer, cfg, device)
    z = torch.randn(2, cfg.z_dim, device=device)
    c2w = ref.sample_camera_poses(2, cfg.radius, cfg.azimuth, cfg.elevation, device=device)
    out = hw.render_image(gen, z, c2w)
    assert out["image"].device.type == device.type and out["image"].shape == (2, 3, 8, 8)
    grid = hw.density_grid(gen.field, z[:1], resolution=4)
    assert grid.device.type == device.type and torch.isfinite(grid).all()
