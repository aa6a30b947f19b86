"""LoL low-light enhancement: ``our485`` (train) and ``eval15`` (val/test), low -> high."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from painter_cli.sources.base import Sample, SkipItem, Source, parse_options
from painter_cli.sources.pairs import image_files, read_pair, require_dir


class RestorationPairs(Source):
    """Degraded inputs and clean targets in two folders with the same file names; the target is
    painted by the ``restoration`` codec (the clean image as is)."""

    splits = ("train", "val", "test")

    def __init__(self, root: str | Path, split: str = "train", **options: Any):
        super().__init__(root, split, **options)
        parse_options(self.name, options, {})
        self.folders = self._folders()  # [(id prefix, input dir, target dir)]
        self.items: dict[str, tuple[Path, Path]] = {}
        for prefix, inputs, targets in self.folders:
            require_dir(inputs, self._expect(inputs))
            require_dir(targets, self._expect(targets))
            clean = image_files(targets)
            for stem, path in image_files(inputs).items():
                # Official pairing: the same file name; else the same stem (a .jpg/.png mix).
                target = targets / path.name
                self.items[f"{prefix}{stem}"] = (
                    path,
                    target if target.is_file() else clean.get(stem, target),
                )

    def _folders(self) -> list[tuple[str, Path, Path]]:
        raise NotImplementedError

    def _expect(self, path: Path) -> str:
        return f"layout {self.layout}"

    codec = "restoration"

    def keys(self) -> list[str]:
        return list(self.items)

    def load(self, key: str) -> list[Sample]:
        from painter_cli.tasks import get_codec

        image_path, target_path = self.items[key]
        if not target_path.is_file():
            raise SkipItem(target_path, f"no clean target for {image_path.name}")
        image, clean = read_pair(image_path, target_path)
        return [Sample(id=key, image=image, target=get_codec(self.codec).encode(clean))]


class LolSource(RestorationPairs):
    """LoL (LOw-Light): our485/{low,high} for train, eval15/{low,high} for val and test."""

    name = "lol"
    layout = (
        "ROOT/our485/{low,high}/<name>.png (train), ROOT/eval15/{low,high}/<name>.png (val, test)"
    )
    task = "lol-lowlight"

    def _folders(self) -> list[tuple[str, Path, Path]]:
        sub = "our485" if self.split == "train" else "eval15"
        return [("", self.root / sub / "low", self.root / sub / "high")]
