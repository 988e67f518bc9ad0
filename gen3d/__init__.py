"""gen3d: the support library every notebook of the course kit imports.

It holds data, plotting, metrics and plumbing -- never a graded solution.

Conventions (the one place they are written down; every module refers here):

Symbols used in shape annotations
    B batch, S samples per ray, N points, C channels, D/H/W depth/height/width,
    R voxel resolution (R^3 grid), K codebook size, T timesteps or tokens, V views.

Voxels
    ``(B, 1, D, H, W)`` occupancy in [0, 1]. The grid spans the world cube [-1, 1]^3 and its axes
    are ``D = z``, ``H = y``, ``W = x``: ``vox[b, 0, k, j, i]`` is the cell whose centre is
    ``(x_i, y_j, z_k)`` with ``x_i = -1 + (2 i + 1) / R``. So ``index (k, j, i) <-> (z, y, x)``,
    the same order as ``torch.nn.functional.grid_sample``'s ``(x, y, z)`` last-dimension convention
    read backwards.

World frame
    +y is up, objects stand on y = -1 ... 1 and their *front* faces +z.

Images
    Models see ``(B, 3, H, W)`` in [-1, 1]; plotting functions take [0, 1].
    Row 0 of an image is the top (+y in the camera frame).

Cameras
    Camera-to-world matrices ``(B, 4, 4)``; the camera looks down its -z axis, +y is up, +x right
    (OpenGL / NeRF convention). Rays pass through pixel centres: pixel (row r, column c) of an
    H x W image looks through ``((c + 0.5) / W * 2 - 1, 1 - (r + 0.5) / H * 2)`` in normalised
    device coordinates. Azimuth 0 looks at the object's front (camera on +z); azimuth grows
    counter-clockwise seen from above (towards +x).

Devices and dtypes
    Every function keeps the device and dtype of its inputs; nothing calls ``.cuda()`` itself.
    ``gen3d.device()`` picks cuda > mps > cpu (override with ``GEN3D_DEVICE``).

Randomness
    Functions whose randomness the grader must reproduce take a ``torch.Generator`` (or a seed).
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__version__ = "0.1.0"

__all__ = ["device", "seed_everything", "run_mode", "pick", "output_dir", "__version__"]

_VALID_DEVICES = ("cpu", "cuda", "mps")
_VALID_MODES = ("smoke", "small", "full")


def device() -> torch.device:
    """The device notebooks should use: ``$GEN3D_DEVICE`` if set, else cuda > mps > cpu."""
    requested = os.environ.get("GEN3D_DEVICE", "").strip().lower()
    if requested:
        kind = requested.split(":")[0]
        if kind not in _VALID_DEVICES:
            raise ValueError(f"GEN3D_DEVICE={requested!r}: expected one of {_VALID_DEVICES} "
                             "(optionally with an index, e.g. cuda:1)")
        if kind == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("GEN3D_DEVICE asks for CUDA but torch.cuda.is_available() is False")
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a CPU ``torch.Generator`` with that seed."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))
    return torch.Generator().manual_seed(int(seed))


def run_mode() -> str:
    """How big the notebooks' runs are: ``smoke`` (CI: seconds), ``small`` (CPU: minutes) or
    ``full`` (GPU). ``$GEN3D_MODE`` overrides; otherwise ``full`` on CUDA and ``small`` elsewhere."""
    mode = os.environ.get("GEN3D_MODE", "").strip().lower()
    if mode:
        if mode not in _VALID_MODES:
            raise ValueError(f"GEN3D_MODE={mode!r}: expected one of {_VALID_MODES}")
        return mode
    return "full" if torch.cuda.is_available() else "small"


def pick(smoke, small, full):
    """Return the argument matching :func:`run_mode` (a config preset chooser for notebooks)."""
    return {"smoke": smoke, "small": small, "full": full}[run_mode()]


def output_dir(topic: str):
    """Where a notebook writes its files (GIFs, meshes): ``$GEN3D_OUTPUT/<topic>`` if set, else
    ``<repo>/build/outputs/<topic>`` (git-ignored). Never the notebook's own folder: anything beside a
    solution notebook would be copied into the students' handout."""
    from pathlib import Path

    root = os.environ.get("GEN3D_OUTPUT") or Path(__file__).resolve().parents[1] / "build" / "outputs"
    path = Path(root) / topic
    path.mkdir(parents=True, exist_ok=True)
    return path
