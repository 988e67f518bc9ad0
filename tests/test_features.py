"""gen3d.features: the classifiers learn tiny synthetic tasks, save/load, metric helpers."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from gen3d import features
from gen3d.features import ClassifierConfig, ImageClassifier, VoxelClassifier


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a busy 2-core machine two threads spin-wait on each other and small
    convolutions run tens of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _voxel_task(n, r=16, seed=0):
    """Half flat slabs (label 0), half upright bars (label 1), random sizes and offsets.

    Returns occupancy (n, 1, r, r, r) and labels (n,).
    """
    g = torch.Generator().manual_seed(seed)
    c = (torch.arange(r) + 0.5) / r * 2 - 1
    zz, yy, xx = torch.meshgrid(c, c, c, indexing="ij")  # (r, r, r) each
    vox, labels = torch.zeros(n, 1, r, r, r), torch.arange(n) % 2
    for b in range(n):
        long, short = (0.5 + 0.3 * torch.rand(2, generator=g)).tolist()
        thin = 0.15 + 0.1 * torch.rand(1, generator=g).item()
        ox, oy, oz = (0.3 * (torch.rand(3, generator=g) - 0.5)).tolist()
        x, y, z = (xx - ox).abs(), (yy - oy).abs(), (zz - oz).abs()
        if labels[b] == 0:
            vox[b, 0] = ((x < long) & (y < thin) & (z < short)).float()
        else:
            vox[b, 0] = ((x < thin) & (y < long) & (z < thin)).float()
    return vox, labels


def _image_task(n, size=16, seed=0):
    """Label = colour of a square (red 0 / blue 1); front = a magenta dot is present.

    Returns uint8 images (n, 3, size, size), labels (n,), front (n,) bool.
    """
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, size, size), 230, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    front = torch.rand(n, generator=g) < 0.5
    for b in range(n):
        top, left = torch.randint(0, size // 2, (2,), generator=g).tolist()
        color = torch.tensor([200, 30, 30] if labels[b] == 0 else [30, 30, 200], dtype=torch.uint8)
        images[b, :, top:top + size // 2, left:left + size // 2] = color[:, None, None]
        if front[b]:
            magenta = torch.tensor([255, 0, 255], dtype=torch.uint8)[:, None, None]
            images[b, :, top + 2:top + 5, left + 2:left + 5] = magenta
    return images, labels, front


SMALL = ClassifierConfig(num_classes=2, width=8, feature_dim=32, resolution=16)


def test_voxel_classifier_shapes_and_resizing():
    model = VoxelClassifier(ClassifierConfig(num_classes=3, width=4, feature_dim=16))
    for r in (16, 32, 64):  # any R is resized to 32
        x = torch.rand(2, 1, r, r, r)
        assert model(x).shape == (2, 3) and model.features(x).shape == (2, 16)
    with pytest.raises(ValueError, match="B, 1, R, R, R"):
        model(torch.rand(2, 32, 32, 32))


def test_image_classifier_shapes_and_resizing():
    model = ImageClassifier(ClassifierConfig(num_classes=4, width=4, feature_dim=16))
    for s in (16, 32, 64):
        logits, front = model(torch.rand(2, 3, s, s) * 2 - 1)
        assert logits.shape == (2, 4) and front.shape == (2,)
    assert model.features(torch.zeros(5, 3, 32, 32)).shape == (5, 16)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        model(torch.zeros(2, 1, 32, 32))


def test_train_voxel_classifier_learns_slabs_vs_bars():
    vox, labels = _voxel_task(64)
    model, history = features.train_voxel_classifier(vox, labels, 2, steps=30, batch_size=16,
                                                     config=SMALL)
    assert len(history["loss"]) == 30 and not model.training
    test_vox, test_labels = _voxel_task(40, seed=1)
    acc = features.evaluate_voxel_classifier(model, test_vox, test_labels)["category_accuracy"]
    assert acc > 0.9, f"held-out accuracy {acc}"


def test_train_image_classifier_learns_colour_and_front_dot():
    images, labels, front = _image_task(128)
    model, history = features.train_image_classifier(images, labels, front, 2, steps=100,
                                                     batch_size=32, config=SMALL)
    assert sum(history["loss"][-10:]) < sum(history["loss"][:10])
    test = _image_task(64, seed=1)
    acc = features.evaluate_image_classifier(model, *test)
    assert acc["category_accuracy"] > 0.9 and acc["front_accuracy"] > 0.9, acc


def test_save_load_round_trip_and_missing_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data"):
        features.load_voxel_classifier("cpu", root=tmp_path)
    model = VoxelClassifier(SMALL)
    path = features.features_dir(tmp_path) / features.VOXEL_WEIGHTS
    features._save(model, {"category_accuracy": 0.5}, path)
    loaded = features.load_voxel_classifier("cpu", root=tmp_path)
    x = torch.rand(3, 1, 16, 16, 16)
    assert torch.allclose(loaded(x), model.eval()(x))
    assert not any(p.requires_grad for p in loaded.parameters())
    assert (features.features_dir(tmp_path) / "voxel_classifier.json").exists()


def test_voxel_fid_and_category_histogram():
    torch.manual_seed(0)
    model = VoxelClassifier(SMALL).eval()
    cubes, _ = _voxel_task(40)
    assert features.voxel_fid(cubes, cubes, model) == pytest.approx(0.0, abs=1e-4)
    assert features.voxel_fid(cubes, cubes.flip(-2).transpose(-1, -2), model) > 1e-3
    hist = features.category_histogram(cubes, model)
    assert hist.shape == (2,) and hist.sum().item() == pytest.approx(1.0)
    assert features.predict_categories(cubes[:5], model).shape == (5,)


class _RedDetector(nn.Module):
    """Stand-in front detector: fires when the image's red channel is bright on average."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        return torch.zeros(x.shape[0], 2), self.scale * x[:, 0].mean((1, 2))


def test_janus_score_separates_correct_and_janus_objects():
    azimuths = torch.arange(8) * (2 * math.pi / 8)  # 0, 45, ..., 315 degrees
    front_views = (torch.atan2(azimuths.sin(), azimuths.cos()).abs() < math.pi / 2).float()
    correct = (front_views * 2 - 1)[None, :, None, None, None].expand(3, 8, 3, 4, 4)
    janus = torch.ones(3, 8, 3, 4, 4)
    good = features.janus_score(correct, azimuths, model=_RedDetector())
    bad = features.janus_score(janus, azimuths, model=_RedDetector())
    assert good["score"] == 0.0 and good["front_rate"] == 1.0
    assert good["buckets_firing"] == pytest.approx(3 / 8)  # sectors at 0, +45, -45 degrees
    assert bad["score"] == 1.0 and bad["buckets_firing"] == 1.0
    assert len(good["bucket_rates"]) == 8 and good["bucket_rates"][4] == 0.0
    with pytest.raises(ValueError, match="back-hemisphere"):
        features.janus_score(correct[:, :2], azimuths[:2], model=_RedDetector())


def _fake_data_dir(root, n=10, views=4):
    """A tiny data folder in the format of gen3d.data (32^3 voxels, 32 x 32 renders)."""
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    labels = np.arange(n) % 5
    for split in ("train", "test"):
        np.savez(root / f"voxels_32_{split}.npz", labels=labels, seeds=np.arange(n),
                 occupancy=(rng.random((n, 1, 32, 32, 32)) > 0.7).astype(np.uint8),
                 sdf=rng.standard_normal((n, 1, 32, 32, 32)).astype(np.float16))
        azimuth = rng.random((n, views)).astype(np.float32) * 6.28
        np.savez(root / f"renders_32_{split}.npz", labels=labels, seeds=np.arange(n),
                 images=rng.integers(0, 256, (n, views, 3, 32, 32), dtype=np.uint8),
                 c2w=np.tile(np.eye(4, dtype=np.float32), (n, views, 1, 1)), azimuth=azimuth,
                 elevation=np.zeros((n, views), np.float32), front_visible=np.cos(azimuth) > 0,
                 fov_degrees=np.float32(40.0))
    products = {name: {"fingerprint": "v1"} for name in features._PRODUCTS}
    (root / "manifest.json").write_text(json.dumps({"products": products}))


def test_train_all_writes_reports_and_skips_when_up_to_date(tmp_path, monkeypatch):
    import json

    _fake_data_dir(tmp_path)
    tiny = {"steps": 2, "batch_size": 4, "lr": 1e-3, "width": 4, "feature_dim": 8}
    monkeypatch.setitem(features.TRAIN_CONFIG, "voxel", dict(tiny))
    monkeypatch.setitem(features.TRAIN_CONFIG, "image", dict(tiny))
    logs = []
    reports = features.train_all(tmp_path, log=logs.append)
    saved = json.loads((tmp_path / "features" / "image_classifier.json").read_text())
    assert set(saved["accuracy"]) == {"category_accuracy", "front_accuracy"}
    assert saved["data_fingerprint"] == features.data_fingerprint(tmp_path)
    assert reports["voxel"]["model_config"]["width"] == 4
    assert features.load_image_classifier("cpu", root=tmp_path).config.feature_dim == 8
    features.train_all(tmp_path, log=logs.append)
    assert sum("up to date" in line for line in logs) == 2
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["products"]["voxels_32_train.npz"]["fingerprint"] = "v2"  # the data changed
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert features.data_fingerprint(tmp_path) != saved["data_fingerprint"]
    with pytest.raises(FileNotFoundError, match="make data"):
        features.data_fingerprint(tmp_path / "nowhere")
