"""Task codecs: how each task's output is painted as an image and read back.

``get_codec(name, **params)`` returns a ``Codec`` (``encode``, ``decode``, ``valid``, ``name``,
``kind``, ``discrete``, ``params()``); ``list_codecs()`` names them all.
"""

from __future__ import annotations

# Importing the modules registers their codecs.
from painter_cli.tasks import depth, instance, keypoints, panoptic, restoration, semantic  # noqa: F401
from painter_cli.tasks.base import KINDS, Codec, get_codec, list_codecs

__all__ = ["KINDS", "Codec", "get_codec", "list_codecs"]
