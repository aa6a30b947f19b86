"""Prompt files: selected pairs as PNG folders (``image.png`` + ``target.png``, ``top/``), tuned
prompts as PNGs plus their exact tensors (``prompt.safetensors``, read by ``predict --prompt``),
and the report every prompt command writes."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from painter_cli.errors import PainterError
from painter_cli.inference import (
    PROMPT_TENSORS,
    Prompt,
    atomic_write,
    load_image,
    load_prompt_tensors,
    load_target,
    make_prompt,
    prompt_sources,
    to_uint8,
    write_png,
)
from painter_cli.inference.images import umask_mode
from painter_cli.model import denormalize

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
TOP_DIR = "top"


def safe_name(text: str) -> str:
    """A sample id as a file-name stem."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "pair"


def sample_id(reader: Any, i: int) -> str:
    return reader.sample_id(int(i)) if hasattr(reader, "sample_id") else str(i)


def write_pair(folder: Path, stem: str, reader: Any, index: int) -> None:
    """Write training pair ``index`` as ``stem.png`` + ``stem``'s target (``image``/``target``
    stems: ``image.png`` + ``target.png``; others: ``stem.png`` + ``stem_target.png``)."""
    s = reader[int(index)]
    tstem = "target" if stem == "image" else f"{stem}_target"
    write_png(folder / f"{stem}.png", np.asarray(s["image"], np.uint8))
    write_png(folder / f"{tstem}.png", np.asarray(s["target"], np.uint8))


def write_top(out: Path, reader: Any, ranked: Sequence[int]) -> Path:
    """The top pairs as a multi-prompt folder ``out/top`` (replaced as a whole)."""
    final = out / TOP_DIR
    tmp = Path(tempfile.mkdtemp(prefix=".top.tmp-", dir=out))
    try:
        tmp.chmod(umask_mode(0o777))  # mkdtemp makes it owner-only
        for rank, c in enumerate(ranked, start=1):
            write_pair(tmp, f"{rank:02d}_{safe_name(sample_id(reader, c))}", reader, c)
        if final.exists():
            old = out / f".top.old-{os.getpid()}"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def save_prompt(out: str | Path, prompt: Prompt) -> None:
    """``out/image.png``, ``out/target.png`` (de-normalised, S x S) and ``out/prompt.safetensors``
    (the exact normalised (3, S, S) tensors ``image`` and ``target``)."""
    from safetensors.torch import save

    out = Path(out)
    both = denormalize(torch.stack([prompt.image, prompt.target]).float().cpu())
    arrs = to_uint8(both.permute(0, 2, 3, 1).numpy())
    write_png(out / "image.png", arrs[0])
    write_png(out / "target.png", arrs[1])
    tensors = {
        "image": prompt.image.detach().float().cpu().contiguous(),
        "target": prompt.target.detach().float().cpu().contiguous(),
    }
    data = save(tensors, metadata={"format": "painter-prompt"})
    atomic_write(out / PROMPT_TENSORS, lambda fh: fh.write(data))


def load_prompt(
    spec: str | Path, size: int, codec: Any = None, target_resize: str | None = None
) -> Prompt:
    """The first prompt of a ``--prompt`` folder or ``IMAGE:TARGET`` at side ``size``
    (``prompt.safetensors`` when present, used exactly)."""
    src = prompt_sources(str(spec))
    if len(src) > 1:
        log.warning("%s holds %d prompt pairs; using the first", spec, len(src))
    first = src[0]
    if isinstance(first, str):
        prompt = load_prompt_tensors(first)
        if prompt.size != size:
            raise PainterError(
                f"{first}: prompt tensors are {prompt.size}x{prompt.size}, not {size}"
            )
        return prompt
    image, target = load_image(first[0]), load_target(first[1], codec)
    discrete = bool(getattr(codec, "discrete", False))
    return make_prompt(
        image,
        target,
        size,
        discrete=discrete,
        target_resize=target_resize,
        name=f"{first[0]}:{first[1]}",
    )
