"""Unit tests of gen3d.hw_voxel_gan (the plumbing of topic 01): loop, sampling, metrics, plots, export.

The models here are tiny stand-ins (a linear generator and discriminator), never the graded solution.
"""
from __future__ import annotations

import dataclasses
import math

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from gen3d import hw_voxel_gan as hw  # noqa: E402

R, Z = 8, 4


class TinyGenerator(nn.Module):
    """(B, Z) -> (B, 1, R, R, R) in [0, 1] through one linear layer and a BatchNorm."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(Z, R**3)
        self.norm = nn.BatchNorm1d(R**3)

    def forward(self, z):
        return torch.sigmoid(self.norm(self.linear(z))).reshape(-1, 1, R, R, R)  # (B, 1, R, R, R)


class TinyDiscriminator(nn.Module):
    """(B, 1, R, R, R) -> (B,) logits."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(R**3, 1)

    def forward(self, x):
        return self.linear(x.flatten(1)).squeeze(1)  # (B,)


def critic_loss(real, fake):  # a stand-in, not the GAN loss of the notebook
    return (fake - real).mean()


def critic_generator_loss(fake):
    return -fake.mean()


def sign_accuracy(real, fake):
    return float(((real > 0).float().mean() + (fake < 0).float().mean()) / 2)


def boxes(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 1, R, R, R) random axis-aligned boxes in {0, 1}."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(n, 1, R, R, R)
    for i in range(n):
        lo = torch.randint(0, R // 2, (3,), generator=g)
        hi = lo + torch.randint(2, R // 2 + 1, (3,), generator=g)
        out[i, 0, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1
    return out


CONFIG = hw.GANConfig(resolution=R, z_dim=Z, base_channels=4, batch_size=6, steps=7, eval_every=3, n_eval=5)


def _train(update_rule, steps=7, evaluator=None, **losses):
    torch.manual_seed(0)
    gen, disc = TinyGenerator(), TinyDiscriminator()
    before = {"g": [p.clone() for p in gen.parameters()], "d": [p.clone() for p in disc.parameters()]}
    kwargs = dict(discriminator_loss=critic_loss, generator_loss=critic_generator_loss,
                  discriminator_accuracy=sign_accuracy, should_update_discriminator=update_rule)
    kwargs.update(losses)
    history = hw.train_gan(gen, disc, boxes(20), dataclasses.replace(CONFIG, steps=steps), evaluator=evaluator,
                           progress=False, **kwargs)
    changed = {name: any(not torch.equal(a, b) for a, b in zip(before[name], model.parameters()))
               for name, model in (("g", gen), ("d", disc))}
    return history, changed, gen


def test_presets_are_valid_architectures():
    for cfg in (hw.SMOKE, hw.SMALL, hw.FULL, hw.GRADER):
        stages = int(math.log2(cfg.resolution // 4))
        assert 2 ** (stages + 2) == cfg.resolution, cfg
        assert cfg.base_channels % 2 ** (stages - 1) == 0, cfg
        assert 0 < cfg.d_threshold <= 1 and cfg.beta1 == 0.5


def test_train_gan_applies_the_update_rule():
    history, changed, _ = _train(lambda acc, thr: False)
    assert len(history.loss_d) == len(history.loss_g) == len(history.accuracy) == 7
    assert history.d_updated == [False] * 7
    assert changed == {"g": True, "d": False}, "D must not move when the rule says no"
    history, changed, _ = _train(lambda acc, thr: True)
    assert history.d_updated == [True] * 7 and changed == {"g": True, "d": True}


def test_train_gan_passes_accuracy_and_threshold_to_the_rule():
    seen = []

    def rule(acc, thr):
        seen.append((acc, thr))
        return acc <= thr

    history, _, _ = _train(rule, steps=4)
    assert [a for a, _ in seen] == history.accuracy
    assert all(t == CONFIG.d_threshold for _, t in seen)
    assert history.d_updated == [a <= CONFIG.d_threshold for a in history.accuracy]


def test_train_gan_evaluates_every_eval_every_steps_and_at_the_end():
    calls = []

    def evaluator(gen):
        calls.append(gen.training)
        return {"one_nna": 0.5}

    history, _, gen = _train(lambda a, t: True, steps=7, evaluator=evaluator)
    assert history.eval_steps == [3, 6, 7]
    assert history.quality == {"one_nna": [0.5, 0.5, 0.5]}
    assert gen.training, "the loop must leave the generator in training mode after evaluating"


def test_train_gan_rejects_bad_inputs():
    with pytest.raises(ValueError, match="voxels"):
        hw.train_gan(TinyGenerator(), TinyDiscriminator(), torch.zeros(4, 1, R, R), CONFIG,
                     discriminator_loss=critic_loss, generator_loss=critic_generator_loss,
                     discriminator_accuracy=sign_accuracy, should_update_discriminator=lambda a, t: True)
    with pytest.raises(FloatingPointError, match="discriminator_loss"):
        _train(lambda a, t: True, discriminator_loss=lambda r, f: (r * float("nan")).mean())
    with pytest.raises(TypeError, match="generator_loss"):
        _train(lambda a, t: True, generator_loss=lambda f: -f)


def test_generate_is_seeded_in_range_and_restores_the_mode():
    torch.manual_seed(0)
    gen = TinyGenerator()
    hw.train_gan(gen, TinyDiscriminator(), boxes(20), CONFIG, discriminator_loss=critic_loss,
                 generator_loss=critic_generator_loss, discriminator_accuracy=sign_accuracy,
                 should_update_discriminator=lambda a, t: True, progress=False)
    a = hw.sample_shapes(gen, 5, Z, seed=3)
    b = hw.sample_shapes(gen, 5, Z, seed=3)
    assert a.shape == (5, 1, R, R, R) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    assert gen.training
    single = hw.generate(gen, hw.sample_latents(5, Z, seed=3)[:1])
    assert torch.allclose(single[0], a[0], atol=1e-6), "eval mode: a sample must not depend on its batch"


def test_evaluator_scores_the_reference_set_perfectly():
    held = hw.ShapeSet(boxes(12, seed=1), torch.arange(12) % 3)
    assert len(held.voxels.flatten(1).unique(dim=0)) == 12, "the test needs 12 different boxes"
    ev = hw.Evaluator(held, n_samples=12, z_dim=Z, use_classifier=False)
    same = ev.score(ev.reference.clone())
    assert same["coverage"] == 1.0 and same["mmd"] == 0.0
    # each copy's nearest other shape is its twin in the other set: 1-NNA = 0
    assert same["one_nna"] == 0.0
    empty = ev.score(torch.zeros(12, 1, R, R, R))  # collapsed onto one (empty) shape
    # every sample has the same nearest reference shape; no reference shape overlaps any sample;
    # the samples are each other's nearest neighbours (distance 0), so 1-NNA is (close to) 1
    assert empty["coverage"] == 1 / 12 and empty["mmd"] == 1.0 and empty["one_nna"] > 0.9
    with pytest.raises(ValueError, match="n_samples"):
        hw.Evaluator(held, n_samples=13, z_dim=Z, use_classifier=False)


def test_stage_report_lists_each_conv_and_leaves_statistics_alone():
    model = nn.Sequential(nn.ConvTranspose3d(2, 3, 4, 2, 1), nn.BatchNorm3d(3), nn.Conv3d(3, 1, 3, 1, 1))
    stats = model[1].running_mean.clone()
    report = hw.stage_report(model, torch.randn(2, 2, 4, 4, 4))
    assert "ConvTranspose3d" in report and "(2, 3, 8, 8, 8)" in report and "(2, 1, 8, 8, 8)" in report
    assert torch.equal(model[1].running_mean, stats) and model.training


def test_plots_return_figures(tmp_path):
    history, _, gen = _train(lambda a, t: a <= t, evaluator=lambda g: {"one_nna": 0.9, "coverage": 0.2, "mmd": 0.5})
    assert hw.plot_training(history).axes
    assert len(hw.plot_quality(history, save=tmp_path / "q.png").axes) == 3
    assert (tmp_path / "q.png").is_file()
    assert len(hw.plot_generator_losses(critic_generator_loss).axes) == 2
    walk = {"lerp": torch.randn(4, Z), "slerp": torch.randn(4, Z)}
    assert hw.plot_latent_norms(walk).axes
    assert len(hw.show_interpolation(gen, walk).axes) == 8
    fig = hw.show_shapes_by_category(boxes(6), torch.tensor([0, 0, 1, 1, 1, 1]), ["a", "b", "c"], per_category=2)
    assert len(fig.axes) == 6
    with pytest.raises(ValueError, match="quality"):
        hw.plot_quality(hw.GANHistory())


def test_export_samples_writes_meshes_and_skips_empty_grids(tmp_path):
    grids = torch.cat([boxes(2), torch.zeros(1, 1, R, R, R)])
    paths = hw.export_samples(grids, tmp_path)
    assert [p.name for p in paths] == ["sample_0.obj", "sample_1.obj"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_load_shapes_matches_the_dataset():
    try:
        shapes = hw.load_shapes(16, "test")
    except FileNotFoundError as err:
        pytest.skip(f"dataset not built: {err}")
    assert shapes.voxels.dtype == torch.float32 and shapes.voxels.shape[1:] == (1, 16, 16, 16)
    assert set(shapes.voxels.unique().tolist()) <= {0.0, 1.0}
    assert shapes.labels.dtype == torch.int64 and len(shapes.labels) == len(shapes.voxels)
    assert int(shapes.labels.max()) == len(hw.category_names()) - 1


def test_train_gan_and_sampling_run_on_each_device(device):
    torch.manual_seed(0)
    gen, disc = TinyGenerator().to(device), TinyDiscriminator().to(device)
    history = hw.train_gan(gen, disc, boxes(20), CONFIG, discriminator_loss=critic_loss,
                           generator_loss=critic_generator_loss, discriminator_accuracy=sign_accuracy,
                           should_update_discriminator=lambda a, t: True, device=device, progress=False)
    assert len(history.loss_g) == CONFIG.steps and all(math.isfinite(v) for v in history.loss_d)
    assert all(p.device.type == device.type for p in [*gen.parameters(), *disc.parameters()])
    samples = hw.sample_shapes(gen, 3, Z, seed=0)
    assert samples.device.type == "cpu" and samples.shape == (3, 1, R, R, R)
