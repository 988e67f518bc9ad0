"""gen3d.data: a tiny dataset built into tmp_path, the loading contract, up-to-date and errors."""
from __future__ import annotations

import math
import time
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch

from gen3d import data
from gen3d.data import (CATEGORIES, DataConfig, RenderDataset, VoxelDataset, build, load_renders,
                        load_voxels)
from gen3d.render_data import CameraConfig, orbit_camera
from gen3d.shapes import make_shape
from gen3d.voxels import voxelize

TINY = DataConfig(shapes_per_category=3, voxel_resolutions=(8, 16), subset_per_category=((16, 2),),
                  render_sizes=(16,), views=4, render_supersample=1,
                  camera=CameraConfig(radius=3.4, fov_degrees=40.0))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gen3d_data")
    report = build(folder, config=TINY, workers=0, progress=False)
    return folder, report


def test_build_writes_every_product(tiny):
    folder, report = tiny
    expected = {f"voxels_{r}_{s}.npz" for r in (8, 16) for s in ("train", "test")} | \
               {f"renders_16_{s}.npz" for s in ("train", "test")}
    assert set(report["built"]) == expected and report["skipped"] == []
    assert {p.name for p in folder.iterdir()} == expected | {"manifest.json"}  # no temp files
    assert data.CATEGORIES == CATEGORIES and len(CATEGORIES) >= 5


def test_load_voxels_contract(tiny):
    folder, _ = tiny
    train, test = load_voxels(8, "train", folder), load_voxels(8, "test", folder)
    n_cat = len(CATEGORIES)
    assert train["occupancy"].shape == (2 * n_cat, 1, 8, 8, 8)          # 3 shapes: 2 train, 1 test
    assert test["occupancy"].shape == (n_cat, 1, 8, 8, 8)
    assert train["occupancy"].dtype == torch.uint8 and train["sdf"].dtype == torch.float32
    assert train["labels"].dtype == torch.int64
    assert train["labels"].tolist() == [c for c in range(n_cat) for _ in range(2)]
    assert set(train["occupancy"].unique().tolist()) == {0, 1}
    assert not set(train["seeds"].tolist()) & set(test["seeds"].tolist())  # disjoint splits
    # the stored grids are the generator's: rebuild one shape and compare
    label, seed = int(train["labels"][3]), int(train["seeds"][3])
    shape = make_shape(CATEGORIES[label], seed)
    expected = voxelize(shape, 8, supersample=8, threshold=0.5, keep_thin=True)
    assert torch.equal(train["occupancy"][3].float(), expected)
    inside = train["sdf"][train["occupancy"] == 1]
    assert (train["sdf"] < 0).sum() > 0 and (inside < 0.2).all()
    sub = load_voxels(16, "train", folder)                              # the 16^3 subset
    assert sub["occupancy"].shape[0] == n_cat and sub["occupancy"].shape[2:] == (16, 16, 16)


def test_load_renders_contract(tiny):
    folder, _ = tiny
    r = load_renders(16, "train", folder)
    n = 2 * len(CATEGORIES)
    assert r["images"].shape == (n, 4, 3, 16, 16) and r["images"].dtype == torch.uint8
    assert r["c2w"].shape == (n, 4, 4, 4) and r["c2w"].dtype == torch.float32
    assert r["azimuth"].shape == r["elevation"].shape == r["front_visible"].shape == (n, 4)
    assert r["front_visible"].dtype == torch.bool and r["labels"].dtype == torch.int64
    assert torch.equal(r["front_visible"], r["azimuth"].cos() > 0)
    assert ((r["azimuth"] >= 0) & (r["azimuth"] < 2 * math.pi)).all()
    torch.testing.assert_close(r["c2w"], orbit_camera(r["azimuth"], r["elevation"], 3.4),
                               atol=1e-5, rtol=0)
    assert r["fov_degrees"] == 40.0
    # the front emblem shows in front views only (a grazing sliver may show just past 90 degrees)
    rgb = r["images"].float() / 255
    magenta = ((torch.minimum(rgb[:, :, 0], rgb[:, :, 2]) - rgb[:, :, 1]) > 0.25).flatten(2).sum(-1)
    assert (magenta[r["azimuth"].cos() < -0.15] == 0).all()
    assert (magenta[r["front_visible"] & (r["azimuth"].cos() > 0.7)] > 0).float().mean() > 0.8
    assert (r["images"][:, :, :, 0, 0] == 255).all()                      # white corners


def test_datasets(tiny):
    folder, _ = tiny
    voxels = VoxelDataset(8, "test", data_dir=folder)
    assert len(voxels) == len(CATEGORIES)
    vox, label = voxels[2]
    assert vox.shape == (1, 8, 8, 8) and vox.dtype == torch.float32 and label == 2
    renders = RenderDataset(16, "train", data_dir=folder)
    assert len(renders) == 2 * len(CATEGORIES) * 4
    item = renders[5]                                                   # shape 1, view 1
    raw = load_renders(16, "train", folder)
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["image"].min() >= -1 and item["image"].max() <= 1
    torch.testing.assert_close(item["image"], raw["images"][1, 1].float() / 127.5 - 1)
    assert item["label"] == int(raw["labels"][1])
    assert item["front_visible"] == bool(raw["front_visible"][1, 1])
    torch.testing.assert_close(item["c2w"], raw["c2w"][1, 1])
    batch = next(iter(torch.utils.data.DataLoader(renders, batch_size=3)))
    assert batch["image"].shape == (3, 3, 16, 16) and batch["front_visible"].dtype == torch.bool


def test_second_build_is_skipped_and_changes_rebuild_only_their_products(tiny, tmp_path):
    folder, _ = tiny
    start = time.perf_counter()
    again = build(folder, config=TINY, workers=0, progress=False)
    assert again["built"] == [] and time.perf_counter() - start < 1.0
    # a copy of the data with one more view per shape: only the renders are stale
    for p in folder.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    more_views = build(tmp_path, config=replace(TINY, views=2), workers=0, progress=False)
    assert sorted(more_views["built"]) == ["renders_16_test.npz", "renders_16_train.npz"]
    (tmp_path / "voxels_8_test.npz").unlink()                            # a missing file
    assert build(tmp_path, config=replace(TINY, views=2), workers=0,
                 progress=False)["built"] == ["voxels_8_test.npz"]


def test_failed_write_keeps_the_old_file_and_no_temp(tiny, tmp_path, monkeypatch):
    folder, _ = tiny
    path = tmp_path / "voxels_8_train.npz"
    path.write_bytes((folder / "voxels_8_train.npz").read_bytes())
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez_compressed", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        data._save_npz(path, {"x": np.zeros(3)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["voxels_8_train.npz"]


def test_build_is_deterministic(tiny, tmp_path):
    folder, _ = tiny
    config = replace(TINY, voxel_resolutions=(8,), render_sizes=())
    build(tmp_path, config=config, workers=0, progress=False)
    a, b = load_voxels(8, "train", folder), load_voxels(8, "train", tmp_path)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_data_dir_and_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GEN3D_DATA", str(tmp_path))
    assert data.data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match=r"voxels_32_train\.npz.*make data"):
        load_voxels(32)
    with pytest.raises(FileNotFoundError, match=r"renders_32_test\.npz.*make data"):
        RenderDataset(32, "test")
    with pytest.raises(ValueError, match="split"):
        load_voxels(32, "val")


def test_corrupt_files_raise_value_error(tiny, tmp_path):
    folder, _ = tiny
    good = (folder / "voxels_8_train.npz").read_bytes()
    truncated = tmp_path / "voxels_8_train.npz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"voxels_8_train\.npz.*(corrupt|truncated)"):
        load_voxels(8, "train", tmp_path)
    truncated.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"voxels_8_train\.npz"):
        load_voxels(8, "train", tmp_path)
    with zipfile.ZipFile(folder / "voxels_8_train.npz") as src:           # drop the 'sdf' array
        arrays = {n[:-4]: np.load(src.open(n)) for n in src.namelist() if n != "sdf.npy"}
    np.savez_compressed(tmp_path / "voxels_8_train.npz", **arrays)
    with pytest.raises(ValueError, match=r"voxels_8_train\.npz has no array 'sdf'"):
        load_voxels(8, "train", tmp_path)


def test_command_line(tmp_path, capsys):
    assert data.main(["--out", str(tmp_path), "--per-category", "2", "--quiet"]) == 0
    assert "built" in capsys.readouterr().out
    assert load_voxels(64, "test", tmp_path)["occupancy"].shape[2:] == (64, 64, 64)
    assert data.main(["--out", str(tmp_path), "--per-category", "2", "--quiet"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_config_validation():
    with pytest.raises(ValueError, match="shapes_per_category"):
        DataConfig(shapes_per_category=1)
    with pytest.raises(ValueError, match="categories"):
        DataConfig(categories=("sofa",))
