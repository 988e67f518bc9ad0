"""Tests of gen3d.hw_diffusion (the plumbing of topic 04) and of the grader's own oracles for it."""
from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gen3d import hw_diffusion as hw

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "04_diffusion" / "diffusion.ipynb"


@pytest.fixture(scope="module")
def ns():
    """The reference notebook's definitions (loaded the way the grader and 05_sds load them)."""
    from gen3d.notebook import load_notebook

    return load_notebook(NOTEBOOK)


# ----------------------------------------------------------------------------- extract / draws
def test_extract_shapes_and_values(device):
    values = torch.arange(10, dtype=torch.float64) / 10
    x = torch.zeros(3, 2, 4, 4, device=device, dtype=torch.float32)
    picked = hw.extract(values, torch.tensor([0, 9, 4], device=device), x)
    assert picked.shape == (3, 1, 1, 1) and picked.dtype == torch.float32 and picked.device == x.device
    assert picked.flatten().tolist() == pytest.approx([0.0, 0.9, 0.4])
    scalar = hw.extract(values, 7, x)
    assert scalar.shape == (1, 1, 1, 1) and float(scalar) == pytest.approx(0.7)
    assert float(hw.extract(values, torch.tensor(3), x.double())) == pytest.approx(0.3)


def test_random_draws_are_reproducible_and_follow_like(device):
    like = torch.zeros((), device=device, dtype=torch.float64)
    a = hw.randn((4, 3), torch.Generator().manual_seed(5), like=like)
    b = hw.randn((4, 3), torch.Generator().manual_seed(5), like=like)
    assert a.device == like.device and a.dtype == torch.float64 and torch.equal(a, b)
    u = hw.rand((1000,), torch.Generator().manual_seed(1), like=like)
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.05
    k = hw.randint(7, (2000,), torch.Generator().manual_seed(2), device=device)
    assert k.dtype == torch.long and k.device == like.device and set(k.tolist()) == set(range(7))


def test_schedule_container_to_and_length():
    sched = hw.DiffusionSchedule(*[torch.rand(6, dtype=torch.float64) for _ in range(8)])
    assert sched.num_timesteps == 6
    moved = sched.to("cpu")
    assert moved is not sched and torch.equal(moved.betas, sched.betas)


# ----------------------------------------------------------------------------- the grader's oracles
def test_grader_closed_forms_match_diffusers():
    from diffusers import DDPMScheduler

    from autograder.topics import t04_diffusion as t04

    betas = t04._random_betas(torch.Generator().manual_seed(0), 40).numpy()
    tables = t04._tables(betas)
    sched = DDPMScheduler(num_train_timesteps=40, trained_betas=betas.tolist(), variance_type="fixed_small")
    np.testing.assert_allclose(tables["alphas_cumprod"], sched.alphas_cumprod.double().numpy(), rtol=1e-5)
    variance = [float(sched._get_variance(t)) for t in range(1, 40)]
    np.testing.assert_allclose(tables["posterior_variance"][1:], variance, rtol=1e-4)
    # x0 = x_t exactly when t = 0 (coef1 = 1, coef2 = 0); the posterior mean of a noise-free x_t is exact
    assert tables["posterior_mean_coef1"][0] == pytest.approx(1.0) and tables["posterior_mean_coef2"][0] == 0
    ab, abp = tables["alphas_cumprod"], tables["alphas_cumprod_prev"]
    np.testing.assert_allclose(tables["posterior_mean_coef1"] + tables["posterior_mean_coef2"] * np.sqrt(ab),
                               np.sqrt(abp), rtol=1e-10)


def test_grader_gradcheck_helper_detects_a_detach():
    from autograder.topics import t04_diffusion as t04

    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert t04._gradcheck(lambda a: a.sin() * 2, [x])
    assert not t04._gradcheck(lambda a: a.sin() * 2 + a.detach() ** 2, [x])


def test_mutants_apply_to_the_reference_cells():
    import nbformat

    from autograder.mutants import apply_patch, catalogue

    nb = nbformat.read(NOTEBOOK, as_version=4)
    mutants, alternatives = catalogue("04_diffusion")
    assert len(mutants) >= 48 and alternatives
    for patch in mutants + alternatives:
        patched = apply_patch(nb, patch)
        cell = [c for c in patched.cells if c.metadata.get("nbgrader", {}).get("grade_id") == patch.function][0]
        ast.parse(cell.source)


# ----------------------------------------------------------------------------- data and training
def _fake_renders(n=3, v=2, size=8):
    g = torch.Generator().manual_seed(0)
    return {"images": torch.randint(0, 256, (n, v, 3, size, size), generator=g, dtype=torch.uint8),
            "labels": torch.tensor([2, 0, 1])[:n], "azimuth": torch.rand(n, v, generator=g),
            "elevation": torch.rand(n, v, generator=g)}


def test_load_training_data_flattens_object_major(monkeypatch):
    from gen3d import data

    renders = _fake_renders()
    monkeypatch.setattr(data, "load_renders", lambda size, split: renders)
    out = hw.load_training_data(lambda im: im.float() / 127.5 - 1, image_size=8)
    assert out["x"].shape == (6, 3, 8, 8) and out["label"].tolist() == [2, 2, 0, 0, 1, 1]
    assert torch.equal(out["x"][3], renders["images"][1, 1].float() / 127.5 - 1)
    assert out["view"][3].tolist() == pytest.approx([float(renders["azimuth"][1, 1]),
                                                     float(renders["elevation"][1, 1])])
    cond = hw.batch_condition(out, torch.tensor([0, 5]))
    assert cond["label"].tolist() == [2, 1] and cond["view"].shape == (2, 2)
    picked = hw.sample_conditions(out, num_classes=3, per_class=2, generator=torch.Generator().manual_seed(0))
    assert picked["label"].tolist() == [0, 0, 1, 1, 2, 2] and picked["view"].shape == (6, 2)


def _tiny_setup(ns, steps=4):
    cfg = hw.DiffusionConfig(image_size=8, base_channels=8, channel_mults=(1, 2), attn_levels=(1,), steps=steps,
                             batch_size=4, num_timesteps=20, warmup=2, seed=3)
    g = torch.Generator().manual_seed(0)
    data = {"x": torch.rand(10, 3, 8, 8, generator=g) * 2 - 1, "label": torch.randint(0, 2, (10,), generator=g),
            "view": torch.rand(10, 2, generator=g)}
    schedule = ns.schedule_from_betas(ns.make_beta_schedule("cosine", cfg.num_timesteps))
    return cfg, data, schedule


def test_train_diffusion_is_reproducible_and_keeps_an_ema(ns):
    runs = []
    for _ in range(2):
        cfg, data, schedule = _tiny_setup(ns)
        torch.manual_seed(0)
        model = ns.UNet(**cfg.unet_kwargs(num_classes=2))
        result = hw.train_diffusion(model, ns.diffusion_loss, data, schedule, cfg, progress=False)
        runs.append(result)
        assert len(result["losses"]) == cfg.steps and all(math.isfinite(v) for v in result["losses"])
        assert not result["ema"].training
        assert not all(p.requires_grad for p in result["ema"].parameters())
        differs = [not torch.equal(a, b) for a, b in zip(model.parameters(), result["ema"].parameters())]
        assert any(differs)
    assert runs[0]["losses"] == runs[1]["losses"]


def test_save_and_load_prior_round_trip(ns, tmp_path):
    cfg, data, schedule = _tiny_setup(ns)
    torch.manual_seed(0)
    model = ns.UNet(**cfg.unet_kwargs(num_classes=2)).eval()
    path = hw.save_prior(model, cfg, num_classes=2, metrics={"fid": 1.5}, path=tmp_path / "priors" / "p.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["p.json", "p.pt"]  # no temp files left
    config = json.loads(path.with_suffix(".json").read_text())
    assert config["schedule"] == {"kind": "cosine", "num_timesteps": 20} and config["null_label"] == -1
    loaded, config2 = hw.load_prior(path, ns.UNet)
    assert config2 == config and not any(p.requires_grad for p in loaded.parameters())
    x, t = data["x"][:2], torch.tensor([3, 17])
    cond = {"label": torch.tensor([1, -1]), "view": data["view"][:2]}
    with torch.no_grad():
        assert torch.equal(loaded(x, t, cond), model(x, t, cond))


def test_load_prior_errors(ns, tmp_path):
    with pytest.raises(FileNotFoundError, match="04_diffusion"):
        hw.load_prior(tmp_path / "missing.pt", ns.UNet)
    cfg, _, _ = _tiny_setup(ns)
    path = hw.save_prior(ns.UNet(**cfg.unet_kwargs(2)), cfg, 2, path=tmp_path / "p.pt")
    with pytest.raises(TypeError, match="unet_cls"):
        hw.load_prior(path)


def test_presets_build_valid_unets(ns):
    for name, cfg in hw.PRESETS.items():
        model = ns.UNet(**cfg.unet_kwargs(num_classes=5))
        assert sum(p.numel() for p in model.parameters()) > 0, name
        assert cfg.image_size % 2 ** (len(cfg.channel_mults) - 1) == 0, name


def test_matched_reference_has_the_requested_category_counts():
    reference = {"x": torch.arange(40, dtype=torch.float32).view(40, 1, 1, 1).expand(40, 3, 2, 2),
                 "label": torch.arange(40) // 10}                             # category-major, like the data
    labels = torch.tensor([3, 3, 0, 2, 2, 2])
    picked = hw.matched_reference(reference, labels)
    assert picked.shape == (6, 3, 2, 2)
    assert sorted((picked[:, 0, 0, 0] // 10).long().tolist()) == sorted(labels.tolist())
    with pytest.raises(ValueError, match="category"):
        hw.matched_reference(reference, torch.full((11,), 1))


def test_prior_path_keeps_smoke_runs_apart(tmp_path):
    assert hw.prior_path(32, root=tmp_path, mode="small") == tmp_path / "priors" / "diffusion_32.pt"
    assert hw.prior_path(64, root=tmp_path, mode="smoke").name == "diffusion_64_smoke.pt"
