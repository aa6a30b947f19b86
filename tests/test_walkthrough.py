"""docs/custom-task.md runs as written: its Python pair makers and its ``painter`` commands, in
order, on 8 tiny photos, with only the sizes made tiny (training steps, search sizes, workers)."""

from __future__ import annotations

import json
import re
import runpy
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from painter_cli.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "custom-task.md"

# The only changes made to the page's commands: tiny sizes, one process, no loader workers.
TINY = [
    (r"--steps 300", "--steps 2"),
    (r"--candidates 16 --probe-size 8", "--candidates 3 --probe-size 2 --random 2"),
]
EXTRA = {
    "encode": ["--workers", "1"],
    "train": ["--set", "data.num_workers=0", "--set", "run.threads=1"],
}


def blocks(text: str) -> list[tuple[str, str]]:
    """The page's fenced ``python`` and ``bash`` blocks, in order: ``(language, code)``."""
    return re.findall(r"```(python|bash)\n(.*?)```", text, flags=re.S)


def commands(code: str) -> list[str]:
    """The command lines of a bash block, continuation lines joined."""
    return [line.strip() for line in code.replace("\\\n", " ").splitlines() if line.strip()]


def _photos(folder: Path, n: int = 8) -> None:
    """Tiny 'photos': a flat background with three rectangles, so that they have edges."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        a = np.full((40, 48, 3), rng.integers(0, 256, 3), np.uint8)
        for _ in range(3):
            y, x = rng.integers(0, 28), rng.integers(0, 36)
            a[y : y + 12, x : x + 12] = rng.integers(0, 256, 3)
        Image.fromarray(a).save(folder / (f"photo{i}.jpg" if i % 2 else f"photo{i}.png"))


@pytest.fixture
def ran(tmp_path_factory, monkeypatch, cli_runner):
    """Run the whole page in a fresh folder; returns (folder, [(command, output)])."""
    root = tmp_path_factory.mktemp("walkthrough")
    monkeypatch.chdir(root)
    monkeypatch.setenv("PAINTER_NO_PROGRESS", "1")
    _photos(root / "my_photos")
    done = []
    for language, code in blocks(DOC.read_text()):
        if language == "python":
            (root / "pair_maker.py").write_text(code)
            runpy.run_path(str(root / "pair_maker.py"))
            continue
        for line in commands(code):
            if line.startswith("python "):  # the pair maker, already run above
                continue
            for pattern, tiny in TINY:
                line = re.sub(pattern, tiny, line)
            args = shlex.split(line)
            assert args[0] == "painter", line
            args = args[1:] + EXTRA.get(args[1], [])
            result = cli_runner.invoke(app, args, env={"COLUMNS": "200"})
            assert result.exit_code == 0, f"{line}\n{result.output}"
            done.append((line, result.output))
    return root, done


def test_the_custom_task_walkthrough_runs_as_written(ran):
    root, done = ran
    verbs = [shlex.split(line)[1] for line, _ in done]
    assert verbs == [
        *["encode", "encode", "info", "train", "prompt-select", "predict", "eval"],
        *["encode", "encode", "train", "eval"],
    ]
    # 8 photos: every 4th (photo3, photo7) for validation, the pair maker's split.
    info = dict(done)[next(line for line, _ in done if line.startswith("painter info"))]
    assert "edges" in info and "48x40" in info
    assert not (root / "shards/edges-train/skipped.txt").exists()
    assert json.loads((root / "shards/edges-val/index.json").read_text())["count"] == 2
    assert (root / "prompts/edges/image.png").is_file()
    for i in range(8):  # the checkpoint's own task decodes the paintings into label maps
        labels = np.asarray(Image.open(root / f"preds/edges/photo{i}_labels.png"))
        assert labels.shape == (40, 48) and set(np.unique(labels)) <= {0, 1}
    edges = json.loads((root / "eval/edges/metrics.json").read_text())
    assert edges["metrics"]["images"] == 2
    assert {"fg_iou", "fg_f1", "all_bg_pacc"} <= set(edges["metrics"])
    assert len(json.loads((root / "eval/edges/painted/predictions.json").read_text())) == 2
    eval_output = done[6][1]
    assert "fg_iou" in eval_output and "all_bg_pacc" in eval_output and "iou class 1" in eval_output
    colour = json.loads((root / "eval-colourise/metrics.json").read_text())
    assert colour["settings"]["metric_variant"] == "lol" and colour["metrics"]["images"] == 2
