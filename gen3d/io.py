"""Real data in standard formats, so a course can swap ShapeNet in for the procedural shapes.

* ``.binvox`` voxel files (ShapeNet ships them): :func:`read_binvox`, :func:`write_binvox`.
* A NeRF-style folder of images + ``transforms.json`` (the Blender synthetic scenes' layout):
  :func:`load_image_folder`, :func:`write_image_folder`.

binvox layout (https://www.patrickmin.com/binvox/binvox.html): an ASCII header ::

    #binvox 1
    dim D D D
    translate tx ty tz
    scale s
    data

then run-length bytes: pairs ``(value, count)`` with value 0/1 and count 1..255. Voxel
``(x, y, z)`` is stored at ``x * D * D + z * D + y``: **x slowest, then z, y fastest**, i.e. the
flat data reshaped to ``(x, z, y)``. Ours is ``(z, y, x)`` (``gen3d``: index ``(k, j, i) <->
(z, y, x)``), so ``ours = native.transpose(1, 2, 0)`` and ``native = ours.transpose(2, 0, 1)``.
In binvox, voxel index ``i`` has normalised coordinate ``(i + 0.5) / D`` in the unit cube, and a
point of the original model is ``translate + scale * normalised``; we return both in ``meta``.
Orientation of the models themselves (which way is up, which way is the front) depends on the
dataset: check one with ``gen3d.viz`` and rotate (``torch.rot90``) to +y up, front +z.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["read_binvox", "write_binvox", "load_image_folder", "write_image_folder"]


# ----------------------------------------------------------------------------- binvox
def _parse_binvox_header(f, path) -> dict:
    """Read header lines up to ``data``: dict of dims (3 ints), translate (3), scale."""
    first = f.readline().strip()
    if not first.startswith(b"#binvox"):
        raise ValueError(f"{path}: not a binvox file (first line {first[:40]!r}, "
                         "expected '#binvox 1')")
    meta = {"version": first.split()[1].decode() if len(first.split()) > 1 else "?",
            "translate": (0.0, 0.0, 0.0), "scale": 1.0}
    while True:
        line = f.readline()
        if not line:
            raise ValueError(f"{path}: binvox header ends before its 'data' line")
        words = line.strip().split()
        if not words:
            continue
        key, values = words[0].decode(errors="replace"), words[1:]
        try:
            if key == "data":
                break
            if key == "dim":
                meta["dims"] = tuple(int(v) for v in values)
            elif key == "translate":
                meta["translate"] = tuple(float(v) for v in values)
            elif key == "scale":
                meta["scale"] = float(values[0])
        except (ValueError, IndexError) as err:
            raise ValueError(f"{path}: bad binvox header line {line.strip()!r}") from err
    dims = meta.get("dims")
    if dims is None or len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"{path}: binvox header needs 'dim D D D' with 3 positive ints, got {dims}")
    if len(set(dims)) != 1:
        raise ValueError(f"{path}: only cubic binvox grids are supported, got dims {dims}")
    return meta


def read_binvox(path) -> tuple[torch.Tensor, dict]:
    """Read a ``.binvox`` file: ``(occupancy, meta)``; ``occupancy`` uint8 ``(1, R, R, R)`` in
    {0, 1} in OUR axis order ``(z, y, x)``; ``meta`` has ``dims``, ``translate``, ``scale``,
    ``version``. ValueError for a wrong header or truncated/overlong data."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such binvox file")
    with open(path, "rb") as f:
        meta = _parse_binvox_header(f, path)
        raw = np.frombuffer(f.read(), dtype=np.uint8)
    if raw.size % 2:
        raise ValueError(f"{path}: binvox data has an odd number of bytes ({raw.size}): truncated")
    values, counts = raw[0::2], raw[1::2].astype(np.int64)
    r = meta["dims"][0]
    if counts.sum() != r ** 3:
        raise ValueError(f"{path}: binvox data encodes {counts.sum()} voxels, expected {r}^3 = "
                         f"{r ** 3} (truncated or corrupt)")
    native = np.repeat((values > 0).astype(np.uint8), counts).reshape(r, r, r)  # (x, z, y)
    ours = np.ascontiguousarray(native.transpose(1, 2, 0))                     # (z, y, x)
    return torch.from_numpy(ours)[None], meta


def write_binvox(path, occupancy, translate=(0.0, 0.0, 0.0), scale: float = 1.0) -> Path:
    """Write ``occupancy``: ``(R, R, R)`` or ``(1, R, R, R)`` in our ``(z, y, x)`` order (anything
    > 0.5 is set) as a binvox file; :func:`read_binvox` gives it back unchanged."""
    occ = torch.as_tensor(occupancy)
    if occ.dim() == 4 and occ.shape[0] == 1:
        occ = occ[0]
    if occ.dim() != 3 or len(set(occ.shape)) != 1:
        raise ValueError(f"occupancy must be (R, R, R) or (1, R, R, R) with equal sides, got "
                         f"{tuple(torch.as_tensor(occupancy).shape)}")
    r = occ.shape[0]
    native = (occ.float() > 0.5).numpy().astype(np.uint8).transpose(2, 0, 1)   # (x, z, y)
    flat = native.reshape(-1)
    starts = np.flatnonzero(np.diff(flat, prepend=255))                        # run starts
    lengths = np.diff(np.append(starts, flat.size))
    pairs = []
    for start, length in zip(starts, lengths):
        full, rest = divmod(int(length), 255)
        pairs += [(flat[start], 255)] * full + ([(flat[start], rest)] if rest else [])
    header = (f"#binvox 1\ndim {r} {r} {r}\ntranslate {' '.join(f'{t:g}' for t in translate)}\n"
              f"scale {scale:g}\ndata\n")
    path = Path(path)
    with open(path, "wb") as f:
        f.write(header.encode())
        f.write(np.array(pairs, dtype=np.uint8).tobytes())
    return path


# ----------------------------------------------------------------------------- image folders
def _read_png(path: Path, background: float) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]; RGBA is composited over ``background``."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"),
                               dtype=np.float32) / 255.0
    except ImportError:  # pragma: no cover - PIL comes with matplotlib
        import matplotlib.image as mpimg
        array = mpimg.imread(path).astype(np.float32)
    except OSError as err:
        raise ValueError(f"{path}: cannot read the image ({err})") from err
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.shape[-1] == 4:
        alpha = array[..., 3:]
        array = array[..., :3] * alpha + background * (1 - alpha)
    return array[..., :3]


def _frame_path(folder: Path, file_path: str) -> Path:
    """A frame's image: ``file_path`` relative to the folder, ``.png`` added if it has none."""
    path = folder / file_path
    if not path.is_file() and path.suffix == "":
        path = path.with_suffix(".png")
    return path


def load_image_folder(path, background: float = 1.0) -> dict:
    """Read a NeRF-style folder: ``transforms.json`` with ``camera_angle_x`` (radians, horizontal)
    and ``frames: [{file_path, transform_matrix (4x4 camera-to-world, OpenGL)}]`` + the images.
    Returns dict of ``images`` float32 ``(N, 3, H, W)`` in [0, 1] (alpha over ``background``),
    ``c2w`` float32 ``(N, 4, 4)``, ``fov_degrees`` (float, horizontal), ``files`` (paths)."""
    folder = Path(path)
    meta_path = folder / "transforms.json"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no transforms.json in this folder")
    try:
        meta = json.loads(meta_path.read_text())
        fov = math.degrees(float(meta["camera_angle_x"]))
        frames = list(meta["frames"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{meta_path}: needs 'camera_angle_x' and a list 'frames' ({err!r})") from err
    if not frames:
        raise ValueError(f"{meta_path}: 'frames' is empty")
    images, poses, files = [], [], []
    for n, frame in enumerate(frames):
        try:
            image_path = _frame_path(folder, frame["file_path"])
            pose = np.asarray(frame["transform_matrix"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{meta_path}: frame {n} needs 'file_path' and a numeric "
                             f"'transform_matrix' ({err!r})") from err
        if pose.shape != (4, 4):
            raise ValueError(f"{meta_path}: frame {n} transform_matrix has shape {pose.shape}, "
                             "expected (4, 4)")
        if not image_path.is_file():
            raise FileNotFoundError(f"{meta_path}: frame {n}'s image {image_path} does not exist")
        image = _read_png(image_path, background)
        if images and image.shape != images[0].shape:
            raise ValueError(f"{image_path}: size {image.shape[:2]} differs from the first "
                             f"frame's {images[0].shape[:2]}")
        images.append(image)
        poses.append(pose)
        files.append(str(image_path))
    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    return {"images": stacked, "c2w": torch.from_numpy(np.stack(poses)),
            "fov_degrees": fov, "files": files}


def write_image_folder(path, images: torch.Tensor, c2w: torch.Tensor, fov_degrees: float) -> Path:
    """Write ``images: (N, 3, H, W)`` in [0, 1] as ``r_{n}.png`` + ``transforms.json`` (poses
    ``c2w: (N, 4, 4)``, horizontal ``fov_degrees``): the layout :func:`load_image_folder` reads."""
    from PIL import Image
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    if c2w.shape != (images.shape[0], 4, 4):
        raise ValueError(f"c2w must be ({images.shape[0]}, 4, 4), got {tuple(c2w.shape)}")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for n in range(images.shape[0]):
        pixels = (images[n].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        Image.fromarray(pixels).save(folder / f"r_{n}.png")
        frames.append({"file_path": f"./r_{n}", "transform_matrix": c2w[n].tolist()})
    meta = {"camera_angle_x": math.radians(fov_degrees), "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(meta, indent=1))
    return folder
