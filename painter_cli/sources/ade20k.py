"""ADE20K (ADEChallengeData2016): 150-class semantic segmentation, task ``ade20k-semseg``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from painter_cli.errors import PainterError
from painter_cli.sources.base import Sample, SkipItem, Source, parse_options, read_image, read_label
from painter_cli.sources.pairs import require_dir

NUM_CLASSES = 150
_FOLDER = {"train": "training", "val": "validation"}


class Ade20kSource(Source):
    """ADE20K (ADEChallengeData2016) semantic segmentation, 150 classes.

    JPEG images (stored as their bytes) and mode-L label PNGs (0 = other, 1..150), painted with the
    official ADE palette. The root may also be the folder above ``ADEChallengeData2016``."""

    name = "ade20k"
    layout = (
        "ROOT/images/{training,validation}/ADE_*.jpg + "
        "ROOT/annotations/{training,validation}/ADE_*.png (mode L, 0 = other, 1..150)"
    )
    splits = ("train", "val")

    def __init__(self, root: str | Path, split: str = "train", **options: Any):
        super().__init__(root, split, **options)
        parse_options(self.name, options, {})
        if not (self.root / "images").is_dir() and (self.root / "ADEChallengeData2016").is_dir():
            self.root = self.root / "ADEChallengeData2016"
        folder = _FOLDER[split]
        self.image_dir = self.root / "images" / folder
        self.label_dir = self.root / "annotations" / folder
        require_dir(self.image_dir, f"ROOT/images/{folder}/ADE_*.jpg (ADEChallengeData2016)")
        require_dir(self.label_dir, f"ROOT/annotations/{folder}/ADE_*.png (ADEChallengeData2016)")

    task = "ade20k-semseg"
    codec = "ade20k-semseg"

    def keys(self) -> list[str]:
        return sorted(
            p.name
            for p in self.image_dir.iterdir()
            if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")
        )

    def load(self, key: str) -> list[Sample]:
        from painter_cli.shards import image_size
        from painter_cli.tasks import get_codec

        image_path = self.image_dir / key
        label_path = self.label_dir / f"{Path(key).stem}.png"
        if not label_path.is_file():
            raise SkipItem(label_path, f"no annotation for {key}")
        image = read_image(image_path)
        labels = read_label(label_path)
        if labels.max(initial=0) > NUM_CLASSES:
            raise PainterError(
                f"{label_path}: label {int(labels.max())} out of range 0..{NUM_CLASSES}"
            )
        if image_size(image) != labels.shape:
            raise PainterError(
                f"{label_path}: size {labels.shape[1]}x{labels.shape[0]} differs from its image "
                f"{image_path} ({image_size(image)[1]}x{image_size(image)[0]})"
            )
        target = get_codec(self.codec).encode(labels)
        return [Sample(id=Path(key).stem, image=image, target=target)]
