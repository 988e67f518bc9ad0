"""Shared fixtures: every device test runs on each available device; CUDA-only tests skip on CPU."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("GEN3D_MODE", "smoke")


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped where none is present)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="CUDA is not available on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=available_devices())
def device(request) -> torch.device:
    """Each available device in turn (cpu, and cuda where present)."""
    return torch.device(request.param)


@pytest.fixture
def repo() -> Path:
    return REPO
