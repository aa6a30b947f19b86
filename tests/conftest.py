"""Shared test helpers: paths to the shared fixtures, a CLI runner, deterministic torch threads."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PARITY = SHARED / "fixtures" / "parity"


@pytest.fixture
def parity_dir() -> Path:
    if not PARITY.is_dir():
        pytest.skip(f"parity fixtures not found at {PARITY} (a checkout without ../shared)")
    return PARITY


@pytest.fixture
def cli_runner():
    from typer.testing import CliRunner

    return CliRunner()
