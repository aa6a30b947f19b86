"""Raw datasets in their original on-disk layouts -> ``Sample`` streams (see ``base.py``).

``SOURCES`` maps a CLI name to ``"module:Class"`` inside this package; modules are imported only
when a source is used, so a missing or broken module affects only its own names.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from painter_cli.errors import PainterError
from painter_cli.sources.base import Sample, SkipItem, Source

__all__ = [
    "SOURCES",
    "describe_sources",
    "Sample",
    "SkipItem",
    "Source",
    "get_source",
    "list_sources",
    "source_class",
]

SOURCES: dict[str, str] = {
    "ade20k": "ade20k:Ade20kSource",
    "coco-semseg": "coco:CocoSemsegSource",
    "coco-instance": "coco:CocoInstanceSource",
    "coco-panoptic": "coco:CocoPanopticSource",
    "coco-keypoints": "coco:CocoKeypointsSource",
    "nyuv2": "nyuv2:NyuV2Source",
    "sidd": "sidd:SiddSource",
    "derain": "derain:DerainSource",
    "lol": "lol:LolSource",
    "fss1000": "fss1000:Fss1000Source",
    "pairs": "pairs:PairsSource",
    "synthetic": "synthetic:SyntheticSource",
}


def source_class(name: str) -> type[Source]:
    """The ``Source`` class registered as ``name`` (``PainterError`` if unknown or unavailable)."""
    if name not in SOURCES:
        raise PainterError(f"unknown source {name!r}", hint=f"known sources: {', '.join(SOURCES)}")
    module_name, attr = SOURCES[name].split(":")
    try:
        module = importlib.import_module(f"painter_cli.sources.{module_name}")
        return getattr(module, attr)
    except (ImportError, AttributeError) as e:
        raise PainterError(f"source {name!r} is not available ({e})") from None


def get_source(name: str, root: str | Path, split: str = "train", **options: Any) -> Source:
    """Build source ``name`` over ``root``; the constructor checks the layout and the options."""
    cls = source_class(name)
    if cls.splits and split not in cls.splits:
        raise PainterError(
            f"source {name}: unknown split {split!r}", hint=f"splits: {', '.join(cls.splits)}"
        )
    return cls(root, split, **options)


def list_sources() -> list[dict[str, Any]]:
    """One dict per registered source: name, layout, splits, options (or ``error`` if unavailable)."""
    out = []
    for name in SOURCES:
        try:
            cls = source_class(name)
        except PainterError as e:
            out.append({"name": name, "error": e.message})
            continue
        options = dict(getattr(cls, "option_help", {}) or {})
        for key in getattr(cls, "_option_spec", {}) or {}:
            options.setdefault(key, "")
        out.append(
            {
                "name": name,
                "layout": getattr(cls, "layout", ""),
                "splits": list(getattr(cls, "splits", ())),
                "options": options,
                "doc": (cls.__doc__ or "").strip().split("\n")[0],
            }
        )
    return out


def describe_sources() -> str:
    """``painter encode --list``: every source with its splits, layout and options."""
    lines = []
    for s in list_sources():
        if "error" in s:
            lines.append(f"{s['name']}: {s['error']}")
            continue
        lines.append(f"{s['name']}: {s['doc']}")
        lines.append(f"  splits: {', '.join(s['splits'])}")
        lines.append("  layout: " + s["layout"].strip().replace("\n", "\n    "))
        for key, text in s["options"].items():
            lines.append(f"  option {key}: {text}".rstrip())
    lines.append(
        "Options are given as --<name> flags (dashes for underscores) or --option NAME=VALUE."
    )
    return "\n".join(lines)
