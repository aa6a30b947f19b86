"""Deraining (MPRNet's Rain13K layout): train/{input,target}; test/<set>/{input,target}."""

from __future__ import annotations

import logging
from pathlib import Path

from painter_cli.errors import PainterError
from painter_cli.sources.lol import RestorationPairs

log = logging.getLogger(__name__)

# The official evaluation order of the five test sets.
TEST_SETS = ("Rain100L", "Rain100H", "Test100", "Test1200", "Test2800")


class DerainSource(RestorationPairs):
    """Deraining (Rain13K train, five test sets): rainy input -> clean target.

    ``train`` = train/; ``val`` = test/Rain100H (the official loss-only validation set); ``test`` =
    every test set present, ids ``<set>/<name>``."""

    name = "derain"
    layout = (
        "ROOT/train/{input,target}/<name>.{jpg,png} (train), "
        "ROOT/test/{Rain100L,Rain100H,Test100,Test1200,Test2800}/{input,target}/<name> (val: Rain100H, test: all)"
    )
    task = "derain"

    def _folders(self) -> list[tuple[str, Path, Path]]:
        if self.split == "train":
            return [("", self.root / "train" / "input", self.root / "train" / "target")]
        if self.split == "val":
            d = self.root / "test" / "Rain100H"
            return [("Rain100H/", d / "input", d / "target")]
        present = [s for s in TEST_SETS if (self.root / "test" / s / "input").is_dir()]
        if not present:
            raise PainterError(
                f"{self.root / 'test'}: no test set found",
                hint=f"expected ROOT/test/<set>/input and target for a set in {', '.join(TEST_SETS)}",
            )
        missing = [s for s in TEST_SETS if s not in present]
        if missing:
            log.warning("derain test sets not found (encoding the others): %s", ", ".join(missing))
        return [
            (f"{s}/", self.root / "test" / s / "input", self.root / "test" / s / "target")
            for s in present
        ]
