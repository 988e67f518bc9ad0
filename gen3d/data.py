"""The kit's datasets: voxels and multi-view renders of the procedural shapes of ``gen3d.shapes``.

``python -m gen3d.data`` (what ``make data`` runs) writes into :func:`data_dir` (``<repo>/data``,
or ``$GEN3D_DATA``), one compressed ``.npz`` per product and split (see ``data/README.md``):

* ``voxels_{R}_{split}.npz`` for R in 16, 32 (every shape) and 64 (a subset):
  ``occupancy (N, 1, R, R, R)`` uint8 in {0, 1}, ``sdf (N, 1, R, R, R)`` float16 (world units),
  ``labels (N,)`` int64 into ``CATEGORIES``, ``seeds (N,)`` int64 (``make_shape(category, seed)``
  rebuilds the shape);
* ``renders_{S}_{split}.npz`` for S = 32 (64 with ``--size-64``): ``images (N, V, 3, S, S)``
  uint8, ``c2w (N, V, 4, 4)``, ``azimuth``/``elevation (N, V)`` radians, ``front_visible (N, V)``
  bool (the camera is in the front hemisphere: cos(azimuth) > 0), ``labels``, ``seeds``,
  ``fov_degrees`` (horizontal);
* ``manifest.json``: the format version, the config and a fingerprint per product (config +
  generator source hash), so a second run with the same config does nothing.

Files are written to a temporary name in the same folder and renamed: never half-written.
Voxel axis order and camera conventions are those of ``gen3d`` (see its docstring).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gen3d.render_data import CameraConfig, render_shape, sample_cameras
from gen3d.shapes import CATEGORIES, make_shape
from gen3d.voxels import sdf_grid, voxelize

__all__ = ["CATEGORIES", "DataConfig", "data_dir", "build", "load_voxels", "load_renders",
           "VoxelDataset", "RenderDataset", "main"]

FORMAT_VERSION = 1
SPLITS = ("train", "test")
TEST_SEED_OFFSET = 1_000_000   # test shapes use seeds from here, train shapes from 0
MANIFEST = "manifest.json"
_SOURCES = ("shapes.py", "voxels.py", "render_data.py", "data.py")
_HINT = "run `make data` (or `python -m gen3d.data`)"


@dataclass(frozen=True)
class DataConfig:
    """What ``build`` makes. Defaults: 5 x 200 shapes (160 train + 40 test each), voxels at 16 and
    32 for all and 64 for 32 per category, 8 views per shape rendered at 32 x 32."""
    shapes_per_category: int = 200         # train + test
    test_fraction: float = 0.2
    seed: int = 0                          # shifts every shape seed (another dataset)
    categories: tuple = CATEGORIES
    voxel_resolutions: tuple = (16, 32, 64)
    subset_per_category: tuple = ((64, 32),)  # (resolution, shapes per category) built partially
    occupancy_threshold: float = 0.5       # a cell is occupied if >= this fraction is inside
    keep_thin_below: int = 32              # below this resolution any half-full octant counts
    render_sizes: tuple = (32,)
    views: int = 8
    render_supersample: int = 2            # rays per pixel side (anti-aliasing)
    camera: CameraConfig = field(default_factory=CameraConfig)

    def __post_init__(self):
        if self.shapes_per_category < 2:
            raise ValueError(f"shapes_per_category must be >= 2 (a train and a test shape), "
                             f"got {self.shapes_per_category}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        unknown = [c for c in self.categories if c not in CATEGORIES]
        if unknown or not self.categories:
            raise ValueError(f"categories must be a non-empty subset of {CATEGORIES}, got "
                             f"{self.categories}")
        if any(count < 2 for _, count in self.subset_per_category):
            raise ValueError(f"subset_per_category counts must be >= 2, got {self.subset_per_category}")
        if self.views < 1 or min(self.voxel_resolutions + self.render_sizes, default=1) < 1:
            raise ValueError("views, voxel_resolutions and render_sizes must be positive")


def data_dir() -> Path:
    """Where the datasets live: ``$GEN3D_DATA`` if set, else ``<repo>/data``."""
    env = os.environ.get("GEN3D_DATA", "").strip()
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data"


_default_data_dir = data_dir  # ``build`` and the loaders take an argument of the same name


# ----------------------------------------------------------------------------- what to make
def _split_counts(config: DataConfig, per_category: int) -> dict:
    """``{split: shapes per category}`` for ``per_category`` shapes (at least 1 test shape)."""
    n_test = min(max(1, round(per_category * config.test_fraction)), per_category - 1)
    return {"train": per_category - n_test, "test": n_test}


def _shape_list(config: DataConfig, split: str, per_category: int | None = None) -> list:
    """``[(label, category, seed), ...]`` of ``split``, category-major (labels index CATEGORIES)."""
    n = config.shapes_per_category if per_category is None else per_category
    count = _split_counts(config, min(n, config.shapes_per_category))[split]
    base = config.seed * 2 * TEST_SEED_OFFSET + (TEST_SEED_OFFSET if split == "test" else 0)
    return [(CATEGORIES.index(c), c, base + i) for c in config.categories for i in range(count)]


def _source_hash(files=_SOURCES) -> str:
    h = hashlib.sha256()
    for name in files:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def _products(config: DataConfig) -> dict:
    """``{file name: spec}`` of every product of ``config``; a spec is JSON-able and its hash is
    the product's fingerprint."""
    subset = dict(config.subset_per_category)
    voxel_src = _source_hash(("shapes.py", "voxels.py", "data.py"))
    render_src = _source_hash(("shapes.py", "render_data.py", "data.py"))
    products = {}
    for split in SPLITS:
        for r in config.voxel_resolutions:
            products[f"voxels_{r}_{split}.npz"] = {
                "kind": "voxels", "resolution": r, "split": split, "source": voxel_src,
                "shapes": _shape_list(config, split, subset.get(r)),
                "threshold": config.occupancy_threshold, "supersample": _voxel_supersample(r),
                "keep_thin": r < config.keep_thin_below}
        for s in config.render_sizes:
            products[f"renders_{s}_{split}.npz"] = {
                "kind": "renders", "size": s, "split": split, "source": render_src,
                "shapes": _shape_list(config, split), "views": config.views,
                "supersample": config.render_supersample, "camera": asdict(config.camera)}
    return products


def _voxel_supersample(resolution: int) -> int:
    """Samples per cell side: about 64 per world axis, at least 2."""
    return max(2, 64 // resolution)


def _fingerprint(spec: dict) -> str:
    text = json.dumps({"format": FORMAT_VERSION, **spec}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- making
def _view_seed(category: str, seed: int) -> int:
    """Seed of a shape's cameras (the same views at every render size)."""
    return zlib.crc32(f"{category}/{seed}/views".encode())


def _make_one(job: dict) -> dict:
    """Every requested product of one shape, as numpy arrays (runs in a worker)."""
    shape = make_shape(job["category"], job["seed"])
    out = {}
    for r in job["resolutions"]:
        sdf = sdf_grid(shape, r)                                         # (1, R, R, R)
        keep_thin = r < job["keep_thin_below"]
        occ = voxelize(shape, r, _voxel_supersample(r), job["threshold"],
                       sdf=None if keep_thin else sdf, keep_thin=keep_thin)
        out[("voxels", r)] = (occ.to(torch.uint8).numpy(), sdf.numpy().astype(np.float16))
    if job["sizes"]:
        cams = sample_cameras(job["views"], _view_seed(job["category"], job["seed"]), job["camera"])
        out["cameras"] = {k: v.numpy() for k, v in cams.items()}
        for s in job["sizes"]:
            image = render_shape(shape, cams["c2w"], s, job["camera"].fov_degrees,
                                 supersample=job["supersample"])          # (V, 3, S, S)
            out[("renders", s)] = (image * 255).round().to(torch.uint8).numpy()
    return out


def _init_worker():
    torch.set_num_threads(1)  # two processes on two cores: no oversubscription


def _run_jobs(jobs: list, workers: int, progress: bool) -> list:
    from tqdm.auto import tqdm
    bar = tqdm(total=len(jobs), desc="gen3d data", unit="shape", disable=not progress)
    results = []
    if workers <= 1 or len(jobs) < 40:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for job in jobs:
                results.append(_make_one(job))
                bar.update()
        finally:
            torch.set_num_threads(threads)
    else:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            for result in pool.imap(_make_one, jobs, chunksize=4):
                results.append(result)
                bar.update()
    bar.close()
    return results


def _assemble(spec: dict, by_shape: dict, config: DataConfig) -> dict:
    """The arrays of one product file from the per-shape results."""
    keys = [(label, cat, seed) for label, cat, seed in spec["shapes"]]
    arrays = {"labels": np.array([k[0] for k in keys], dtype=np.int64),
              "seeds": np.array([k[2] for k in keys], dtype=np.int64)}
    if spec["kind"] == "voxels":
        pairs = [by_shape[(cat, seed)][("voxels", spec["resolution"])] for _, cat, seed in keys]
        arrays["occupancy"] = np.stack([p[0] for p in pairs])           # (N, 1, R, R, R)
        arrays["sdf"] = np.stack([p[1] for p in pairs])                 # (N, 1, R, R, R)
        return arrays
    results = [by_shape[(cat, seed)] for _, cat, seed in keys]
    arrays["images"] = np.stack([r[("renders", spec["size"])] for r in results])  # (N, V, 3, S, S)
    for name in ("c2w", "azimuth", "elevation"):
        arrays[name] = np.stack([r["cameras"][name] for r in results]).astype(np.float32)
    arrays["front_visible"] = np.cos(arrays["azimuth"]) > 0             # (N, V)
    arrays["fov_degrees"] = np.array(config.camera.fov_degrees, dtype=np.float32)
    return arrays


def _save_npz(path: Path, arrays: dict) -> None:
    """``np.savez_compressed`` to a temporary file next to ``path``, then rename (atomic)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the data is for every user (the grader too)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _save_json(path: Path, obj) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        return manifest if manifest.get("format_version") == FORMAT_VERSION else {}
    except (OSError, ValueError):
        return {}


def _stale(folder: Path, products: dict, manifest: dict) -> list:
    """Names of the products whose file is missing, resized, or made with another fingerprint."""
    done = manifest.get("products", {})
    stale = []
    for name, spec in products.items():
        entry, path = done.get(name, {}), folder / name
        if (entry.get("fingerprint") != _fingerprint(spec) or not path.is_file()
                or path.stat().st_size != entry.get("bytes")):
            stale.append(name)
    return stale


def build(data_dir=None, force: bool = False, config: DataConfig = DataConfig(),
          workers: int = 2, progress: bool = True) -> dict:
    """Write the datasets of ``config`` into ``data_dir`` (default :func:`data_dir`), skipping
    products already made with the same config and generator source (``force`` remakes all).
    Returns ``{"data_dir", "built": [file names], "skipped": [file names], "seconds"}``."""
    start = time.perf_counter()
    folder = Path(data_dir) if data_dir is not None else _default_data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    products = _products(config)
    manifest = _read_manifest(folder)
    todo = list(products) if force else _stale(folder, products, manifest)
    jobs = {}
    for name in todo:
        spec = products[name]
        for _, cat, seed in spec["shapes"]:
            job = jobs.setdefault((cat, seed), {
                "category": cat, "seed": seed, "resolutions": [], "sizes": [],
                "threshold": config.occupancy_threshold, "views": config.views,
                "keep_thin_below": config.keep_thin_below,
                "camera": config.camera, "supersample": config.render_supersample})
            job["resolutions" if spec["kind"] == "voxels" else "sizes"].append(
                spec.get("resolution", spec.get("size")))
    results = _run_jobs(list(jobs.values()), workers, progress) if jobs else []
    by_shape = dict(zip(jobs, results))
    entries = dict(manifest.get("products", {}))
    for name in todo:  # the manifest follows each file, so an interrupted build resumes
        _save_npz(folder / name, _assemble(products[name], by_shape, config))
        entries[name] = {"fingerprint": _fingerprint(products[name]),
                         "bytes": (folder / name).stat().st_size,
                         "count": len(products[name]["shapes"])}
        _save_json(folder / MANIFEST, {"format_version": FORMAT_VERSION, "config": asdict(config),
                                       "source_hash": _source_hash(), "products": entries})
    return {"data_dir": str(folder), "built": todo,
            "skipped": [n for n in products if n not in todo],
            "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------------- loading
def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _load_npz(path: Path, keys: tuple) -> dict:
    """The arrays ``keys`` of ``path``: FileNotFoundError if missing, ValueError if unreadable."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {_HINT}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in keys if k in npz.files}
            present = list(npz.files)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error, KeyError) as err:
        raise ValueError(f"{path} is corrupt or truncated ({type(err).__name__}: {err}); "
                         f"delete it and {_HINT}") from err
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{path} has no array {missing[0]!r} (it has {present}); "
                         "rebuild it with `python -m gen3d.data --force`")
    return arrays


def _check_lengths(path: Path, arrays: dict, ndims: dict) -> None:
    n = len(arrays["labels"])
    for key, ndim in ndims.items():
        if arrays[key].ndim != ndim or arrays[key].shape[0] != n:
            raise ValueError(f"{path}: array {key!r} has shape {arrays[key].shape}, expected "
                             f"{ndim} dims with {n} items (one per label)")


def load_voxels(resolution: int = 32, split: str = "train", data_dir=None) -> dict:
    """The voxel dataset at ``resolution`` (16, 32, 64): dict of ``occupancy`` uint8 tensor
    ``(N, 1, R, R, R)`` in {0, 1}, ``sdf`` float32 ``(N, 1, R, R, R)`` (world units, negative
    inside), ``labels`` int64 ``(N,)`` into ``CATEGORIES``, ``seeds`` int64 ``(N,)``."""
    _check_split(split)
    path = Path(data_dir or _default_data_dir()) / f"voxels_{resolution}_{split}.npz"
    arrays = _load_npz(path, ("occupancy", "sdf", "labels", "seeds"))
    _check_lengths(path, arrays, {"occupancy": 5, "sdf": 5, "seeds": 1})
    return {"occupancy": torch.from_numpy(arrays["occupancy"].astype(np.uint8)),
            "sdf": torch.from_numpy(arrays["sdf"].astype(np.float32)),
            "labels": torch.from_numpy(arrays["labels"].astype(np.int64)),
            "seeds": torch.from_numpy(arrays["seeds"].astype(np.int64))}


def load_renders(size: int = 32, split: str = "train", data_dir=None) -> dict:
    """The multi-view renders at ``size``: dict of ``images`` uint8 ``(N, V, 3, H, W)`` (0..255),
    ``c2w`` float32 ``(N, V, 4, 4)``, ``azimuth``/``elevation`` float32 ``(N, V)`` radians,
    ``labels`` int64 ``(N,)``, ``front_visible`` bool ``(N, V)``, ``seeds`` int64 ``(N,)`` and
    ``fov_degrees`` (float, horizontal)."""
    _check_split(split)
    path = Path(data_dir or _default_data_dir()) / f"renders_{size}_{split}.npz"
    keys = ("images", "c2w", "azimuth", "elevation", "labels", "front_visible", "seeds",
            "fov_degrees")
    arrays = _load_npz(path, keys)
    _check_lengths(path, arrays, {"images": 5, "c2w": 4, "azimuth": 2, "elevation": 2,
                                  "front_visible": 2, "seeds": 1})
    out = {"images": torch.from_numpy(arrays["images"].astype(np.uint8)),
           "labels": torch.from_numpy(arrays["labels"].astype(np.int64)),
           "front_visible": torch.from_numpy(arrays["front_visible"].astype(bool)),
           "seeds": torch.from_numpy(arrays["seeds"].astype(np.int64)),
           "fov_degrees": float(arrays["fov_degrees"])}
    for key in ("c2w", "azimuth", "elevation"):
        out[key] = torch.from_numpy(arrays[key].astype(np.float32))
    return out


class VoxelDataset(Dataset):
    """``dataset[i] -> (voxels float32 (1, R, R, R) in {0, 1}, label int)``."""

    def __init__(self, resolution: int = 32, split: str = "train", data_dir=None):
        data = load_voxels(resolution, split, data_dir)
        self.occupancy, self.labels = data["occupancy"], data["labels"]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.occupancy[i].float(), int(self.labels[i])


class RenderDataset(Dataset):
    """One item per (shape, view): ``dict(image float32 (3, H, W) in [-1, 1], label int,
    c2w float32 (4, 4), azimuth, elevation (float32 scalars, radians), front_visible bool)``."""

    def __init__(self, size: int = 32, split: str = "train", data_dir=None):
        self.data = load_renders(size, split, data_dir)
        self.views = self.data["images"].shape[1]

    def __len__(self) -> int:
        return len(self.data["labels"]) * self.views

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        n, v = divmod(i % len(self), self.views)
        d = self.data
        return {"image": d["images"][n, v].float() / 127.5 - 1.0, "label": int(d["labels"][n]),
                "c2w": d["c2w"][n, v], "azimuth": d["azimuth"][n, v],
                "elevation": d["elevation"][n, v], "front_visible": bool(d["front_visible"][n, v])}


# ----------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen3d.data", description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--size-64", action="store_true", help="also render 64 x 64 views")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: data_dir())")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--per-category", type=int, default=None, help="shapes per category")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    config = DataConfig()
    if args.size_64:
        config = replace(config, render_sizes=(32, 64))
    if args.per_category is not None:
        config = replace(config, shapes_per_category=args.per_category)
    report = build(args.out, force=args.force, config=config, workers=args.workers,
                   progress=not args.quiet)
    folder = Path(report["data_dir"])
    if not report["built"]:
        print(f"data is up to date in {folder} ({len(report['skipped'])} files; --force rebuilds)")
        return 0
    print(f"built {len(report['built'])} files in {report['seconds']:.1f} s into {folder}:")
    for name in report["built"]:
        print(f"  {name:28s} {(folder / name).stat().st_size / 1e6:7.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
