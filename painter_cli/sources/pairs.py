"""A custom task with no code edits: already-painted targets matched to images by file stem.

``painter encode pairs ROOT --task NAME --codec CODEC`` pairs ``ROOT/images/<stem>.*`` with
``ROOT/targets/<stem>.*``; ``--json LIST`` (or ROOT being a ``.json`` file) reads the official
pair-list format ``[{"image_path", "target_path", ...}]`` instead, paths relative to ROOT. Targets
are stored as is: they must convert to RGB (as ``predict`` reads them), have the image's size and
hold only what their codec paints (``Codec.check_target``; e.g. a ``semseg`` target only black and
its class colours); a pair failing that is skipped and listed in ``skipped.txt`` with the reason.

``--groups folders`` gives every sample a group (a class, a video, a concept: what its prompt must
share with it): the layout is then ``ROOT/images/<group>/<stem>.*`` + ``ROOT/targets/<group>/
<stem>.*`` (sample id ``<group>/<stem>``), or with ``--json`` the folder holding each
``image_path``. A JSON entry's own ``"group"`` string is its group in any case.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from painter_cli.errors import PainterError
from painter_cli.sources.base import (
    Sample,
    SkipItem,
    Source,
    check_task_name,
    parse_options,
    read_image,
    read_target,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def image_files(folder: Path) -> dict[str, Path]:
    """``stem -> path`` of the image files directly in ``folder`` (``PainterError`` on a stem used
    by two files, since pairing by stem would be ambiguous)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if p.stem in out:
                raise PainterError(f"{p}: stem {p.stem!r} is also used by {out[p.stem].name}")
            out[p.stem] = p
    return out


def require_dir(path: Path, layout_line: str) -> None:
    """One-line ``PainterError`` naming the expected folder when it is missing."""
    if not path.is_dir():
        raise PainterError(f"{path}: folder not found", hint=f"expected {layout_line}")


def read_pair(image_path: Path, target_path: Path, codec: Any = None) -> tuple[bytes | Any, Any]:
    """(image as kept bytes or RGB array, target RGB array), both read as ``predict`` reads them
    (``read_target``: with a depth ``codec``, 16-bit gray targets are millimetres); ``PainterError``
    on a size mismatch."""
    from painter_cli.shards import image_size

    image = read_image(image_path, keep_jpeg=True)
    target = read_target(target_path, codec)
    if image_size(image) != target.shape[:2]:
        h, w = image_size(image)
        raise PainterError(
            f"{target_path}: size {target.shape[1]}x{target.shape[0]} differs from its image "
            f"{image_path} ({w}x{h})"
        )
    return image, target


class PairsSource(Source):
    """Custom task: images and already-painted targets, paired by file stem (or a JSON list)."""

    name = "pairs"
    layout = (
        "ROOT/images/<stem>.{jpg,png,...} + ROOT/targets/<stem>.{png,...} (same stem, same size), "
        "or --json LIST.json: [{image_path, target_path[, group]}] relative to ROOT; "
        "--groups folders: ROOT/{images,targets}/<group>/<stem>.*"
    )
    splits = ("train", "val", "test")
    option_help = {
        "task": "task name written into the shards (required; letters, digits, ., _, -)",
        "codec": "codec that decodes the targets, e.g. semseg, restoration (required)",
        "codec_params": "codec parameters (--codec-param KEY=VALUE)",
        "json": "a pair-list JSON instead of images/ + targets/",
        "groups": "folders: each sub-folder of images/ (and targets/) is a group of samples",
    }

    def __init__(self, root: str | Path, split: str = "train", **options: Any):
        super().__init__(root, split, **options)
        opts = parse_options(
            self.name,
            options,
            {
                "task": (str, None),
                "codec": (str, None),
                "codec_params": (dict, None),
                "json": (str, None),
                "groups": (str, None),
            },
        )
        if opts["groups"] not in (None, "folders"):
            raise PainterError(
                f"source pairs: --groups {opts['groups']!r}: expected 'folders'",
                hint="--groups folders reads ROOT/images/<group>/<stem>.* and targets/<group>/",
            )
        self._folders = opts["groups"] == "folders"
        if not opts["task"]:
            raise PainterError("source pairs needs --task NAME (the task name to write)")
        if not opts["codec"]:
            raise PainterError("source pairs needs --codec NAME (how targets decode, e.g. semseg)")
        from painter_cli.tasks import get_codec

        self._task = check_task_name(opts["task"])
        self._codec = opts["codec"]
        self._params = dict(opts["codec_params"] or {})
        get_codec(self._codec, **self._params)  # unknown codec or parameters fail here
        json_path = opts["json"]
        if json_path is None and self.root.suffix.lower() == ".json":
            json_path, self.root = str(self.root), self.root.parent
        # (sample id, image, target, group or None)
        self.pairs: list[tuple[str, Path, Path, str | None]] = (
            self._from_json(Path(json_path)) if json_path else self._from_folders()
        )

    def _from_folders(self) -> list[tuple[str, Path, Path, str | None]]:
        images_dir, targets_dir = self.root / "images", self.root / "targets"
        if not self._folders:
            require_dir(images_dir, "ROOT/images/<stem>.* and ROOT/targets/<stem>.*")
            require_dir(targets_dir, "ROOT/images/<stem>.* and ROOT/targets/<stem>.*")
            return [(stem, i, t, None) for stem, i, t in _stem_pairs(images_dir, targets_dir)]
        layout = "ROOT/images/<group>/<stem>.* and ROOT/targets/<group>/<stem>.*"
        require_dir(images_dir, layout)
        require_dir(targets_dir, layout)
        groups = sorted(p.name for p in images_dir.iterdir() if _is_group_dir(p))
        if not groups:
            raise PainterError(f"{images_dir}: no group sub-folder", hint=f"expected {layout}")
        loose = image_files(images_dir)
        if loose:
            log.warning(
                "%d image(s) directly in %s belong to no group folder and are left out (e.g. %s)",
                len(loose),
                images_dir,
                next(iter(loose.values())).name,
            )
        return [
            (f"{g}/{stem}", i, t, g)
            for g in groups
            for stem, i, t in _stem_pairs(images_dir / g, targets_dir / g)
        ]

    def _from_json(self, path: Path) -> list[tuple[str, Path, Path, str | None]]:
        if not path.is_absolute() and not path.exists():
            path = self.root / path
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise PainterError(f"{path}: cannot read the pair list ({e})") from None
        if not isinstance(entries, list):
            raise PainterError(f"{path}: expected a JSON list of {{image_path, target_path}}")
        out = []
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or "image_path" not in e or "target_path" not in e:
                raise PainterError(f"{path}: entry {i} lacks image_path/target_path")
            group = e.get("group")
            if group is None and self._folders:
                group = Path(e["image_path"]).parent.name or None
            if group is not None and (not isinstance(group, str) or not group):
                raise PainterError(f"{path}: entry {i}: group must be a non-empty string")
            out.append(
                (
                    str(Path(e["image_path"]).with_suffix("")),
                    self.root / e["image_path"],
                    self.root / e["target_path"],
                    group,
                )
            )
        if len({p[0] for p in out}) != len(out):
            raise PainterError(f"{path}: an image_path is listed twice")
        return out

    @property
    def task(self) -> str:
        return self._task

    @property
    def codec(self) -> str:
        return self._codec

    def codec_params(self) -> dict[str, Any]:
        return dict(self._params)

    def keys(self) -> list[str]:
        return [str(i) for i in range(len(self.pairs))]

    def load(self, key: str) -> list[Sample]:
        sid, image_path, target_path, group = self.pairs[int(key)]
        if not target_path.is_file():
            raise SkipItem(target_path, f"target not found (for image {image_path.name})")
        codec = self.target_codec()
        image, target = read_pair(image_path, target_path, codec)
        problem = codec.check_target(target)
        if problem:
            raise SkipItem(target_path, problem)
        return [Sample(id=sid, image=image, target=target, group=group)]


def _is_group_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".")


def _stem_pairs(images_dir: Path, targets_dir: Path) -> list[tuple[str, Path, Path]]:
    """``(stem, image, target)`` for every image of ``images_dir``, its target the file of the same
    stem in ``targets_dir`` (``<stem>.png`` there when missing: a counted skip at load)."""
    images = image_files(images_dir)
    targets = image_files(targets_dir) if targets_dir.is_dir() else {}
    orphans = sorted(set(targets) - set(images))
    if orphans:
        log.warning(
            "%d target(s) in %s have no image (e.g. %s)", len(orphans), targets_dir, orphans[0]
        )
    return [
        (stem, path, targets.get(stem, targets_dir / f"{stem}.png"))
        for stem, path in images.items()
    ]
