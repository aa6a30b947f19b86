"""FSS-1000: one-shot segmentation of 1000 object classes, task ``fss1000`` (paper Table 4).

Layout and protocol as the few-shot segmentation literature uses them (spec
``official-data-and-evaluation.md`` section 9; the official Painter repository has no FSS code):
``ROOT/<class>/{1..10}.jpg`` with binary masks ``{1..10}.png``, masks read as gray and thresholded
at 128. The classes are split 520 train / 240 val / 240 test by the standard class lists (HSNet's
``splits/fss/{trn,val,test}.txt``), shipped as ``painter_cli/data/fss1000_<split>.txt``; a class
folder not on the chosen split's list is left out. Every sample's group is its class name, so
``painter eval`` prompts each query with another image of its own class.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from painter_cli.errors import PainterError
from painter_cli.sources.base import Sample, SkipItem, Source, read_image

log = logging.getLogger(__name__)

TASK = "fss1000"
# One foreground class painted white on black, black a class of its own (decoded and scored): the
# synthetic suite's fgseg codec, so a model trained on either reads the other's targets.
CODEC_PARAMS = {"num_classes": 1, "base": 2, "background": True}
MASK_THRESHOLD = 128  # gray >= 128 is foreground (HSNet ``data/fss.py``)
_SPLIT_FILE = {"train": "fss1000_train.txt", "val": "fss1000_val.txt", "test": "fss1000_test.txt"}
_HINT = "expected ROOT/<class>/{1..10}.jpg + ROOT/<class>/{1..10}.png (the FSS-1000 folder)"


def split_classes(split: str) -> list[str]:
    """The standard class list of ``split`` (train 520, val 240, test 240 names), in file order."""
    text = resources.files("painter_cli").joinpath(f"data/{_SPLIT_FILE[split]}").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_mask(path: Path) -> np.ndarray:
    """A mask file -> (H, W) uint8 in {0, 1}: gray (any mode converted to L) >= 128 is foreground.
    ``SkipItem`` when missing or unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            gray = np.asarray(im.convert("L"))
    except FileNotFoundError:
        raise SkipItem(path, "mask not found") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise SkipItem(path, f"unreadable mask ({e})") from None
    return (gray >= MASK_THRESHOLD).astype(np.uint8)


class Fss1000Source(Source):
    """FSS-1000 one-shot segmentation (task ``fss1000``, groups = class names).

    Images are stored as their JPEG bytes; targets paint the mask white on black (codec ``semseg``,
    one class, black = background class). A mask whose size differs from its image is resized
    to it (nearest), as the few-shot loaders resize both to one side anyway. Sample ids:
    ``<class>/<stem>``. Option ``classes``: a text file of class names (one a line) to use instead
    of the standard list of the split (a relative path not found from here is read from ROOT).
    """

    name = "fss1000"
    layout = (
        "ROOT/<class>/{1..10}.jpg + ROOT/<class>/{1..10}.png (binary masks, gray >= 128 is "
        "foreground); classes of the split from the standard 520/240/240 lists"
    )
    splits = ("train", "val", "test")
    option_help = {
        "classes": "a file of class names, one a line, instead of the split's standard list",
    }
    task = TASK
    codec = "semseg"

    def __init__(self, root: str | Path, split: str = "train", **options: Any):
        super().__init__(root, split, **options)
        opts = self.checked_options({"classes": (str, None)})
        if not self.root.is_dir():
            raise PainterError(f"{self.root}: dataset root not found", hint=_HINT)
        if (self.root / "FSS-1000").is_dir():
            self.root = self.root / "FSS-1000"
        wanted = split_classes(split)
        if opts["classes"] is not None:
            listed = Path(opts["classes"])
            if not listed.is_absolute() and not listed.exists():
                listed = self.root / listed  # relative to ROOT, as pairs' --json
            wanted = _read_list(listed)
        present = [c for c in wanted if (self.root / c).is_dir()]
        if not present:
            raise PainterError(
                f"{self.root}: none of the {len(wanted)} {split} classes has a folder here "
                f"(e.g. {wanted[0]}/)",
                hint=_HINT,
            )
        if len(present) < len(wanted):
            missing = [c for c in wanted if c not in set(present)]
            log.warning(
                "%d of %d %s classes have no folder in %s (e.g. %s)",
                len(missing),
                len(wanted),
                split,
                self.root,
                missing[0],
            )
        self.classes = present
        self._keys: list[str] | None = None

    def codec_params(self) -> dict[str, Any]:
        return dict(CODEC_PARAMS)

    def keys(self) -> list[str]:
        """``<class>/<image file name>`` per image, classes in list order, images by number."""
        if self._keys is None:
            keys = []
            for c in self.classes:
                images = [
                    p
                    for p in (self.root / c).iterdir()
                    if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg")
                ]
                images.sort(key=_image_order)
                keys.extend(f"{c}/{p.name}" for p in images)
            self._keys = keys
        return self._keys

    def load(self, key: str) -> list[Sample]:
        from PIL import Image

        from painter_cli.shards import image_size

        image_path = self.root / key
        mask_path = image_path.with_suffix(".png")
        mask = read_mask(mask_path)
        image = read_image(image_path)
        h, w = image_size(image)
        if mask.shape != (h, w):
            mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))
        cls, stem = key.split("/")[0], Path(key).stem
        target = self.target_codec().encode(mask)
        return [Sample(id=f"{cls}/{stem}", image=image, target=target, group=cls)]


def _image_order(path: Path) -> tuple[int, int, str]:
    """Numbered images by number (``2.jpg`` before ``10.jpg``), then any others by name."""
    stem = path.stem
    return (0, int(stem), path.name) if stem.isdigit() else (1, 0, path.name)


def _read_list(path: str | Path) -> list[str]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise PainterError(f"{path}: cannot read the class list ({e.strerror or e})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise PainterError(f"{path}: the class list is empty", hint="one class name a line")
    return names
