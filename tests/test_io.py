"""gen3d.io: binvox read/write with the axis mapping, NeRF-style image folders, broken inputs."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gen3d.io import load_image_folder, read_binvox, write_binvox, write_image_folder
from gen3d.render_data import orbit_camera, render_shape
from gen3d.shapes import make_shape
from gen3d.voxels import voxelize


def binvox_bytes(dim, pairs, header_extra=b"translate 0.5 -1 2\nscale 3.5\n"):
    header = b"#binvox 1\ndim %d %d %d\n" % (dim, dim, dim) + header_extra + b"data\n"
    return header + bytes(v for pair in pairs for v in pair)


# ----------------------------------------------------------------------------- binvox
def test_hand_made_binvox_axis_mapping(tmp_path):
    """binvox stores x slowest, then z, y fastest: flat index x * D * D + z * D + y."""
    # dim 2: one set voxel at native (x=1, y=0, z=0) -> flat index 4
    path = tmp_path / "one.binvox"
    path.write_bytes(binvox_bytes(2, [(0, 4), (1, 1), (0, 3)]))
    occ, meta = read_binvox(path)
    assert occ.shape == (1, 2, 2, 2) and occ.dtype == torch.uint8
    assert occ.sum() == 1 and occ[0, 0, 0, 1] == 1                      # ours: [z, y, x]
    assert meta["dims"] == (2, 2, 2) and meta["translate"] == (0.5, -1.0, 2.0)
    assert meta["scale"] == 3.5
    # flat index 1 is (x=0, z=0, y=1); flat index 2 is (x=0, z=1, y=0)
    path.write_bytes(binvox_bytes(2, [(0, 1), (1, 1), (0, 6)]))
    assert read_binvox(path)[0][0, 0, 1, 0] == 1
    path.write_bytes(binvox_bytes(2, [(0, 2), (1, 1), (0, 5)], header_extra=b""))
    occ, meta = read_binvox(path)
    assert occ[0, 1, 0, 0] == 1 and meta["scale"] == 1.0                # header lines optional


def test_binvox_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(0)
    occ = (torch.rand(1, 12, 12, 12, generator=gen) > 0.7).to(torch.uint8)
    occ[0, :, :6] = 0                                                   # a run longer than 255
    write_binvox(tmp_path / "a.binvox", occ, translate=(-1, -1, -1), scale=2.0)
    back, meta = read_binvox(tmp_path / "a.binvox")
    assert torch.equal(back, occ)
    assert meta["translate"] == (-1.0, -1.0, -1.0) and meta["scale"] == 2.0
    # a real shape, and the (R, R, R) input form
    chair = voxelize(make_shape("chair", 0), 16, threshold=0.5)[0]
    write_binvox(tmp_path / "chair.binvox", chair)
    assert torch.equal(read_binvox(tmp_path / "chair.binvox")[0][0].float(), chair)


def test_binvox_written_in_native_order(tmp_path):
    occ = torch.zeros(1, 3, 3, 3, dtype=torch.uint8)
    occ[0, 2, 1, 0] = 1                                                 # z=2, y=1, x=0
    write_binvox(tmp_path / "n.binvox", occ)
    raw = (tmp_path / "n.binvox").read_bytes().split(b"data\n", 1)[1]
    values = np.repeat(np.frombuffer(raw[0::2], np.uint8), np.frombuffer(raw[1::2], np.uint8))
    assert values.nonzero()[0].tolist() == [0 * 9 + 2 * 3 + 1]           # x * 9 + z * 3 + y


@pytest.mark.parametrize("content, problem", [
    (b"#voxels 1\ndim 2 2 2\ndata\n\x00\x08", "not a binvox"),
    (b"#binvox 1\ndata\n\x00\x08", "dim"),
    (b"#binvox 1\ndim 2 2\ndata\n\x00\x08", "dim"),
    (b"#binvox 1\ndim 2 2 2\nscale x\ndata\n\x00\x08", "bad binvox header"),
    (b"#binvox 1\ndim 2 2 2\n", "ends before"),
    (b"#binvox 1\ndim 2 2 2\ndata\n\x00\x05", "truncated"),
    (b"#binvox 1\ndim 2 2 2\ndata\n\x00\x05\x01", "odd number"),
    (b"#binvox 1\ndim 2 2 2\ndata\n\x00\xff", "expected 2"),
])
def test_broken_binvox_raises(tmp_path, content, problem):
    path = tmp_path / "bad.binvox"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=problem) as info:
        read_binvox(path)
    assert "bad.binvox" in str(info.value)


def test_binvox_missing_and_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.binvox"):
        read_binvox(tmp_path / "nope.binvox")
    with pytest.raises(ValueError, match="occupancy"):
        write_binvox(tmp_path / "x.binvox", torch.zeros(2, 3, 4))


# ----------------------------------------------------------------------------- image folders
def test_image_folder_round_trip(tmp_path):
    shape = make_shape("car", 2)
    c2w = orbit_camera(torch.tensor([0.0, 2.0, 4.0]), torch.tensor([0.1, 0.3, -0.1]))
    images = render_shape(shape, c2w, 16)                               # (3, 3, 16, 16)
    write_image_folder(tmp_path, images, c2w, fov_degrees=40.0)
    loaded = load_image_folder(tmp_path)
    assert loaded["images"].shape == (3, 3, 16, 16) and loaded["images"].dtype == torch.float32
    torch.testing.assert_close(loaded["images"], images, atol=0.5 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(loaded["c2w"], c2w)
    assert math.isclose(loaded["fov_degrees"], 40.0)


def test_rgba_is_composited_and_extensions_resolved(tmp_path):
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0] = 255                                                  # red ...
    rgba[0, 0, 3] = 255                                                 # ... opaque at one pixel
    Image.fromarray(rgba, "RGBA").save(tmp_path / "f.png")
    meta = {"camera_angle_x": 0.5, "frames": [{"file_path": "./f", "transform_matrix":
                                                np.eye(4).tolist()}]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    out = load_image_folder(tmp_path)
    assert out["images"].shape == (1, 3, 4, 5)
    torch.testing.assert_close(out["images"][0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(out["images"][0, :, 3, 4], torch.ones(3))  # transparent -> white
    assert math.isclose(out["fov_degrees"], math.degrees(0.5))


def test_broken_image_folders_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="transforms.json"):
        load_image_folder(tmp_path)
    meta = {"camera_angle_x": 0.5, "frames": [{"file_path": "missing.png",
                                               "transform_matrix": np.eye(4).tolist()}]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image_folder(tmp_path)
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(ValueError, match="camera_angle_x"):
        load_image_folder(tmp_path)
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(ValueError, match="transforms.json"):
        load_image_folder(tmp_path)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "a.png")
    meta = {"camera_angle_x": 0.5, "frames": [{"file_path": "a.png", "transform_matrix": [[1, 0]]}]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="transform_matrix"):
        load_image_folder(tmp_path)
    (tmp_path / "a.png").write_bytes(b"not a png")
    meta["frames"][0]["transform_matrix"] = np.eye(4).tolist()
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="a.png"):
        load_image_folder(tmp_path)
