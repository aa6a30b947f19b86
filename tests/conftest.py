"""Shared test helpers: paths to the shared fixtures, a CLI runner, deterministic torch threads."""

from __future__ import annotations

import os
from pathlib import Path

# Tests run tiny models: one thread per process avoids oversubscribing the 2 CI cores (tests that
# start subprocesses, DataLoader workers or torchrun ranks inherit this through the environment).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PARITY = SHARED / "fixtures" / "parity"
OFFICIAL_INFERENCE = SHARED / "fixtures" / "official-inference"


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def parity_dir() -> Path:
    if not PARITY.is_dir():
        pytest.skip(f"parity fixtures not found at {PARITY} (a checkout without ../shared)")
    return PARITY


@pytest.fixture
def official_inference_dir() -> Path:
    """The official per-image scripts' inputs, outputs and painted canvases (its README.md)."""
    if not OFFICIAL_INFERENCE.is_dir():
        pytest.skip(f"official inference fixture not found at {OFFICIAL_INFERENCE}")
    return OFFICIAL_INFERENCE


@pytest.fixture
def cli_runner():
    from typer.testing import CliRunner

    return CliRunner()
