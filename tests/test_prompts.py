"""Prompt selection (successive halving, cache/resume, retrieval) and prompt tuning (frozen model)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from fakes_shards import write_shards
from PIL import Image

from painter_cli.checkpoint import save_checkpoint
from painter_cli.cli import app
from painter_cli.errors import PainterError
from painter_cli.inference import load_prompt_tensors, load_prompts, prompt_sources, to_uint8
from painter_cli.model import build_model, denormalize
from painter_cli.prompts import (
    ModelScorer,
    PromptTuner,
    QueryStore,
    ScoreCache,
    codec_palette,
    describe,
    halving_cost,
    halving_schedule,
    heatmap_loss,
    palette_loss,
    probe_dependence,
    prompt_dependence,
    resolve_objective,
    retrieve,
    select_prompts,
    split_indices,
    stack_canvases,
    successive_halving,
    verdict,
)
from painter_cli.shards import ShardReader


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny forwards are ~30x slower with 2 threads on a busy 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny train/val shards (depth + semseg) and a seeded painter-tiny checkpoint."""
    root = tmp_path_factory.mktemp("prompts")
    train = write_shards(root / "train", n=12, size=(24, 32))
    val = write_shards(root / "val", n=6, size=(24, 32), seed=1, split="val")
    ckpt = save_checkpoint(root / "ckpt", build_model("painter-tiny", seed=0))
    return {"train": train, "val": val, "ckpt": ckpt}


class Counting:
    """A scoring function with known per-candidate quality; counts the evaluations asked for."""

    def __init__(self, quality: dict[int, float], fail_after: int | None = None):
        self.quality = quality
        self.calls: list[tuple[int, int]] = []
        self.fail_after = fail_after

    def __call__(self, candidate, probes):
        if self.fail_after is not None and len(self.calls) + len(probes) > self.fail_after:
            raise KeyboardInterrupt
        self.calls.extend((candidate, p) for p in probes)
        # Probe-dependent noise that never changes the order of the candidates' means.
        return [self.quality[candidate] + 0.001 * ((p * 7) % 5) for p in probes]


# --------------------------------------------------------------------------------------------
# Successive halving


def test_halving_schedule_and_cost_formula():
    assert halving_schedule(8, 8) == [(8, 2), (4, 4), (2, 8)]
    assert halving_cost(8, 8) == 8 * 2 + 4 * 2 + 2 * 4 == 32  # vs 8 x 8 = 64
    assert halving_schedule(5, 6) == [(5, 2), (3, 3), (2, 6)]
    assert halving_schedule(1, 4) == [(1, 4)]
    assert halving_cost(1, 4) == 4
    assert halving_cost(64, 32) == 64 + 32 + 16 * 2 + 8 * 4 + 4 * 8 + 2 * 16 == 224
    assert halving_cost(1000, 100) < 0.02 * 1000 * 100
    # a floor on the probes of the first rounds
    assert halving_schedule(16, 16, 4) == [(16, 4), (8, 4), (4, 8), (2, 16)]
    assert halving_cost(16, 16, 4) == 16 * 4 + 8 * 0 + 4 * 4 + 2 * 8 == 96
    assert halving_schedule(8, 2, 4) == [(8, 2), (4, 2), (2, 2)]
    with pytest.raises(PainterError):
        halving_schedule(0, 3)


def test_successive_halving_keeps_best_half_each_round_and_counts():
    rng = np.random.default_rng(0)
    cands = list(range(100, 116))
    quality = {c: float(q) for c, q in zip(cands, rng.permutation(16), strict=True)}
    score = Counting(quality)
    res = successive_halving(cands, list(range(8)), score, higher_is_better=True)
    assert [(r["candidates"], r["probes"]) for r in res.rounds] == halving_schedule(16, 8)
    alive = cands
    for r in res.rounds[:-1]:
        best_half = sorted(alive, key=lambda c: -quality[c])[: math.ceil(len(alive) / 2)]
        assert r["kept"] == best_half
        alive = best_half
    assert res.ranking[0] == max(cands, key=quality.get)
    assert len(score.calls) == len(set(score.calls)) == halving_cost(16, 8) < 16 * 8
    # lower is better: the worst-quality candidate wins
    res_low = successive_halving(cands, list(range(8)), Counting(quality), False)
    assert res_low.ranking[0] == min(cands, key=quality.get)


def test_select_returns_known_best_and_writes_report(world, tmp_path):
    train = ShardReader(world["train"])
    cands, probes = split_indices(train, "nyuv2-depth", 8, 4, seed=3)
    assert not set(cands) & set(probes) and len(cands) == 8 and len(probes) == 4
    quality = {c: -abs(c - cands[5]) for c in cands}  # cands[5] is the known best
    score = Counting(quality)
    out = tmp_path / "sel"
    report = select_prompts(
        train, "nyuv2-depth", cands, probes, score, out=out, metric="toy",
        higher_is_better=True, top=3, random=0, progress=False,
    )  # fmt: skip
    assert report["best"]["index"] == cands[5]
    assert report["best"]["id"] == train.sample_id(cands[5])
    assert (
        report["forward_passes"]
        == report["evaluations"]
        == halving_cost(8, 4)
        == 8 * 1 + 4 * 1 + 2 * 2
    )
    assert report["random_mean"] is None
    doc = json.loads((out / "report.json").read_text())
    assert set(doc) >= {"task", "metric", "higher_is_better", "best", "random_mean"}
    assert set(doc) >= {"candidates", "forward_passes"}
    assert set(doc["best"]) >= {"id", "score"}
    assert len(doc["candidates"]) == 8
    assert all(set(c) >= {"id", "score", "probes"} for c in doc["candidates"])
    assert doc["candidates"][0]["probes"] == 4
    # the best pair as image.png + target.png, byte-equal to the training pair
    sample = train[cands[5]]
    assert np.array_equal(np.asarray(Image.open(out / "image.png")), sample["image"])
    assert np.array_equal(np.asarray(Image.open(out / "target.png")), sample["target"])
    assert prompt_sources(str(out)) == [(str(out / "image.png"), str(out / "target.png"))]
    assert len(prompt_sources(str(out / "top"))) == 3


def test_random_mean_scores_random_candidates_on_all_probes(world, tmp_path):
    train = ShardReader(world["train"])
    cands, probes = split_indices(train, "nyuv2-depth", 8, 4)
    quality = {c: float(k) for k, c in enumerate(cands)}
    report = select_prompts(
        train, "nyuv2-depth", cands, probes, Counting(quality), out=tmp_path, metric="toy",
        higher_is_better=True, random=3, progress=False,
    )  # fmt: skip
    rand = report["random"]
    assert len(rand) == 3
    expected = np.mean([quality[r["index"]] + 0.001 * np.mean([(p * 7) % 5 for p in probes])
                        for r in rand])  # fmt: skip
    assert report["random_mean"] == pytest.approx(expected)
    assert report["best"]["score"] >= report["random_mean"]


def test_select_reports_what_was_searched_when_less_than_asked(world, tmp_path):
    # 12 pairs, 4 probes: --candidates 64 can search only 8, and 10 random prompts are those 8.
    train = ShardReader(world["train"])
    cands, probes = split_indices(train, "nyuv2-depth", 64, 4)
    assert len(cands) == 8
    quality = {c: float(k) for k, c in enumerate(cands)}
    report = select_prompts(
        train, "nyuv2-depth", cands, probes, Counting(quality), out=tmp_path, metric="toy",
        higher_is_better=True, random=10, progress=False,
        requested={"candidates": 64, "probes": 4},
    )  # fmt: skip
    assert report["searched"] == {
        "pairs": 12, "candidates": 8, "probes": 4, "random": 8, "overlap": 0, "cross": False
    }  # fmt: skip
    assert report["requested"] == {"candidates": 64, "probes": 4, "random": 10}
    assert report["warnings"] == [
        "--candidates 64: the task has 12 training pairs, 4 held out as probes; searched 8",
        "--random 10: only 8 candidates, so the random prompts are all of them (the random mean "
        "is the candidates' mean)",
    ]
    assert json.loads((tmp_path / "report.json").read_text())["searched"]["candidates"] == 8
    # as asked: no warning
    again = select_prompts(
        train, "nyuv2-depth", cands, probes, Counting(quality), out=tmp_path, metric="toy",
        higher_is_better=True, random=3, progress=False,
        requested={"candidates": 8, "probes": 4},
    )  # fmt: skip
    assert again["warnings"] == [] and again["tied"] == [] and again["all_tied"] is False


def test_select_warns_when_probes_are_candidates_or_fewer_than_asked(world, tmp_path):
    train = ShardReader(world["train"])
    same = ShardReader(world["train"])  # --probe naming the --data folder
    cands, probes = split_indices(train, "nyuv2-depth", 6, 6, probe_reader=same)
    overlap = len(set(cands) & set(probes))  # one reader's indices: the same samples
    assert overlap == 3
    quality = {c: float(k) for k, c in enumerate(cands)}
    report = select_prompts(
        train, "nyuv2-depth", cands, probes, Counting(quality), out=tmp_path / "a", metric="toy",
        higher_is_better=True, random=0, progress=False, probe_reader=same,
        requested={"candidates": 6, "probes": 6},
    )  # fmt: skip
    assert report["searched"]["overlap"] == 3
    assert report["warnings"] == [
        "3 of the 6 probes are also candidates (--probe and --data share a folder): a pair "
        "prompting itself scores as if it copied its own target"
    ]
    # probes from other shards (same ids, other folder) never overlap; fewer than asked: said
    val = ShardReader(world["val"])
    cands, probes = split_indices(train, "nyuv2-depth", 4, 10, probe_reader=val)
    assert len(probes) == 6
    report = select_prompts(
        train, "nyuv2-depth", cands, probes, Counting(quality), out=tmp_path / "b", metric="toy",
        higher_is_better=True, random=0, progress=False, probe_reader=val,
        requested={"candidates": 4, "probes": 10},
    )  # fmt: skip
    assert report["searched"]["overlap"] == 0
    assert report["warnings"] == ["--probe-size 10: only 6 probe queries available; scored on 6"]


def test_select_reports_ties_as_ties(world, tmp_path):
    train = ShardReader(world["train"])
    cands, probes = split_indices(train, "nyuv2-depth", 8, 4)
    flat = {c: 0.5 for c in cands}  # every candidate scores the same on every probe
    report = select_prompts(
        train, "nyuv2-depth", cands, probes, Counting(flat), out=tmp_path / "flat", metric="toy",
        higher_is_better=True, random=0, progress=False,
    )  # fmt: skip
    assert report["all_tied"] is True
    finalists = [c["id"] for c in report["candidates"] if c["probes"] == 4]
    assert report["tied"] == finalists and len(finalists) == 2
    # two equal best, the rest worse: a tie of two, not of all
    two = {c: (1.0 if k in (2, 5) else float(k) / 100) for k, c in enumerate(cands)}
    report = select_prompts(
        train, "nyuv2-depth", cands, probes, Counting(two), out=tmp_path / "two", metric="toy",
        higher_is_better=True, random=0, progress=False,
    )  # fmt: skip
    assert report["all_tied"] is False
    assert sorted(report["tied"]) == sorted(train.sample_id(cands[k]) for k in (2, 5))


# --------------------------------------------------------------------------------------------
# Does the task depend on its prompt? (spread against noise)


def test_prompt_dependence_literal_values():
    # 3 prompts x 2 probes: prompt means (1.5, 3.5, 7) -> spread sqrt(15.5 / 2); residuals
    # (+-0.5, +-0.5, -+1) -> noise^2 = 3 / (2 * 1) / 2 = 0.75, the one halving's var(a - b) / 4
    dep = probe_dependence([[1, 2], [3, 4], [5, 9]])
    assert (dep.prompts, dep.probes) == (3, 2)
    assert dep.spread == pytest.approx(math.sqrt(7.75))
    assert dep.noise == pytest.approx(math.sqrt(0.75))
    assert np.var([1 - 2, 3 - 4, 5 - 9], ddof=1) / 4 == pytest.approx(0.75)
    assert dep.r == pytest.approx((7.75 - 0.75) / (7.75 + 0.75))
    assert dep.ratio == pytest.approx(math.sqrt(7.75 / 0.75)) and dep.matters is True
    # a probe with a NaN score in any row is left out
    nan = float("nan")
    assert probe_dependence([[1, 2, nan], [3, 4, 0], [5, 9, 0]]) == dep
    # a probe that is hard for every prompt is not noise; equal prompts do not matter
    assert probe_dependence([[1, 5], [2, 6], [3, 7]]).noise == 0
    flat = probe_dependence([[1, 5], [1, 5], [1, 5]])
    assert (flat.spread, flat.noise, flat.matters) == (0.0, 0.0, False)
    # too few prompts or probes: no verdict
    assert probe_dependence([[1, 2], [3, 4]]).matters is None
    assert probe_dependence([[1.0], [2.0], [3.0]]).matters is None
    assert probe_dependence([]).prompts == 0  # --random 0
    # two given query sets: noise from the difference, r observed
    # a = (0, 2, 4, 6), b = (1, 1, 5, 5): (a + b) / 2 = (0.5, 1.5, 4.5, 5.5), sd sqrt(17/3);
    # d = a - b = (-1, 1, -1, 1), sd sqrt(4/3), noise half of it; r = 16 / sqrt(20 * 16)
    dep = prompt_dependence([0, 2, 4, 6], [1, 1, 5, 5])
    assert dep.spread == pytest.approx(math.sqrt(17 / 3))
    assert dep.noise == pytest.approx(math.sqrt(4 / 3) / 2)
    assert dep.r == pytest.approx(16 / math.sqrt(320)) and dep.matters is True
    assert prompt_dependence([1, 2, 3], [3, 2, 1]).matters is False
    assert prompt_dependence([1, 2, float("nan")], [1, 2, 3]).prompts == 2


def test_probe_dependence_fits_around_cells_skipped_by_design():
    # Exactly additive scores (prompt a_i + probe b_j) with the diagonal never scored: no noise,
    # the spread is the prompt effects' sd, whatever the skipped cells hold.
    a, b = np.array([0.0, 1.0, 3.0, 6.0]), np.array([10.0, 0.0, 5.0, 2.0, 7.0])
    table = a[:, None] + b[None, :]
    skip = np.zeros(table.shape, bool)
    skip[np.arange(4), np.arange(4)] = True
    table[skip] = np.nan
    dep = probe_dependence(table, skip)
    assert dep.noise == pytest.approx(0.0, abs=1e-9)
    assert dep.spread == pytest.approx(np.std(a, ddof=1)) and dep.matters is True
    # row means over the scored cells would mix in the missing probe's difficulty:
    # (3.5, 7, 7.75, 11.5) spread 3.2811 where the prompts differ by sd(a) = sqrt(7) = 2.6458
    assert np.std(np.nanmean(table, axis=1), ddof=1) == pytest.approx(3.2811, abs=1e-4)
    assert dep.spread == pytest.approx(math.sqrt(7))
    # nothing skipped: the closed form
    full = np.random.default_rng(2).normal(size=(5, 6))
    assert probe_dependence(full, np.zeros((5, 6), bool)) == probe_dependence(full)
    # cell noise of sd 1 with every prompt missing one probe: the sd of a 39-cell mean
    rng = np.random.default_rng(0)
    table = rng.normal(size=(300, 40))
    skip = np.zeros(table.shape, bool)
    skip[np.arange(300), np.arange(300) % 40] = True
    dep = probe_dependence(np.where(skip, np.nan, table), skip)
    assert dep.noise == pytest.approx(1 / math.sqrt(39), rel=0.05)
    assert dep.spread == pytest.approx(1 / math.sqrt(39), rel=0.1) and dep.matters is False
    with pytest.raises(ValueError, match="shape"):
        probe_dependence(table, skip[:, :3])


def test_probe_noise_is_the_split_half_noise_over_every_halving():
    import itertools

    table = np.random.default_rng(1).standard_t(3, size=(5, 8))  # heavy-tailed scores
    halvings = []
    for half in itertools.combinations(range(8), 4):
        other = [k for k in range(8) if k not in half]
        d = table[:, list(half)].mean(1) - table[:, other].mean(1)
        halvings.append(np.var(d, ddof=1) / 4)
    assert probe_dependence(table).noise ** 2 == pytest.approx(np.mean(halvings), rel=1e-12)


def test_prompt_dependence_measures_noise_and_signal():
    rng = np.random.default_rng(0)
    probe_noise = rng.normal(size=(300, 40))  # 300 prompts x 40 probes, sd 1 per probe
    # no prompt effect: spread and noise both the sd of a 40-probe mean, 1/sqrt(40)
    dep = probe_dependence(probe_noise)
    assert dep.noise == pytest.approx(1 / math.sqrt(40), rel=0.1)
    assert dep.spread == pytest.approx(1 / math.sqrt(40), rel=0.1)
    assert abs(dep.r) < 0.15 and dep.matters is False
    # a prompt effect of sd 0.5: spread sqrt(0.25 + 1/40), noise unchanged
    effect = rng.normal(scale=0.5, size=(300, 1))
    dep = probe_dependence(probe_noise + effect)
    assert dep.spread == pytest.approx(math.sqrt(0.25 + 1 / 40), rel=0.1)
    assert dep.noise == pytest.approx(1 / math.sqrt(40), rel=0.1)
    assert dep.r == pytest.approx(0.25 / (0.25 + 1 / 20), abs=0.08)  # two halves of 20 probes
    assert dep.matters is True
    text = verdict(dep, "toy")
    assert text.startswith("toy depends on its prompt on 40 probes: 300 random prompts spread")
    assert "does not measurably depend" in verdict(probe_dependence(probe_noise), "toy")


def test_select_report_states_spread_against_noise(world, tmp_path):
    train = ShardReader(world["train"])
    cands, probes = split_indices(train, "nyuv2-depth", 8, 4)
    quality = {c: float(k) for k, c in enumerate(cands)}  # prompts differ by 1, probes by 0.004
    kwargs = dict(metric="toy", higher_is_better=True, random=5, progress=False)
    report = select_prompts(
        train, "nyuv2-depth", cands, probes, Counting(quality), out=tmp_path / "a", **kwargs
    )
    rows = [[quality[r["index"]] + 0.001 * ((p * 7) % 5) for p in probes] for r in report["random"]]
    assert report["dependence"] == probe_dependence(rows).to_json()
    assert report["dependence"]["matters"] is True and report["dependence"]["prompts"] == 5
    flat = select_prompts(
        train, "nyuv2-depth", cands, probes, Counting(dict.fromkeys(cands, 0.5)),
        out=tmp_path / "b", **kwargs,
    )  # fmt: skip
    assert flat["dependence"]["spread"] == 0 and flat["dependence"]["matters"] is False


def test_resume_skips_cached_scores(world, tmp_path):
    train = ShardReader(world["train"])
    cands, probes = split_indices(train, "nyuv2-depth", 8, 4)
    quality = {c: float(k % 5) for k, c in enumerate(cands)}
    kwargs = dict(out=tmp_path, metric="toy", higher_is_better=True, random=0, progress=False)
    with pytest.raises(KeyboardInterrupt):
        select_prompts(train, "nyuv2-depth", cands, probes, Counting(quality, 9), **kwargs)
    saved = json.loads((tmp_path / "scores.json").read_text())
    done = sum(len(v) for v in saved["scores"].values())
    assert 0 < done <= 9 and saved["forward_passes"] == done
    again = Counting(quality)
    report = select_prompts(train, "nyuv2-depth", cands, probes, again, **kwargs)
    assert len(again.calls) == halving_cost(8, 4) - done
    assert report["forward_passes"] == halving_cost(8, 4)
    assert report["forward_passes_this_run"] == len(again.calls)
    rerun = Counting(quality)
    select_prompts(train, "nyuv2-depth", cands, probes, rerun, **kwargs)
    assert rerun.calls == []


def test_score_cache_refuses_another_selection(tmp_path):
    cache = ScoreCache(tmp_path / "scores.json", {"task": "a"})
    cache.put(1, 2, 0.5)
    cache.save(force=True)
    assert ScoreCache(tmp_path / "scores.json", {"task": "a"}).get(1, 2) == 0.5
    with pytest.raises(PainterError, match="another selection"):
        ScoreCache(tmp_path / "scores.json", {"task": "b"})


# --------------------------------------------------------------------------------------------
# Retrieval


@pytest.mark.parametrize("features", ["pixels", "encoder"])
def test_retrieval_picks_the_candidate_with_the_query_image(world, features):
    train = ShardReader(world["train"])
    model = build_model("painter-tiny", seed=0).eval()
    idx = [int(i) for i in train.indices("nyuv2-depth")]
    cands = idx[:10]
    queries = [cands[7], cands[2], cands[4]]
    cdesc = describe(features, train, cands, model, 32)
    qdesc = describe(features, train, queries, model, 32)
    assert [cands[k] for k in retrieve(qdesc, cdesc)] == queries


# --------------------------------------------------------------------------------------------
# Real model, through the CLI


def test_prompt_select_cli_with_model(world, tmp_path, cli_runner):
    out = tmp_path / "sel"
    args = ["prompt-select", "--task", "nyuv2-depth", "--checkpoint", str(world["ckpt"])]
    args += ["--data", str(world["train"]), "--probe", str(world["val"]), "--candidates", "6"]
    args += ["--probe-size", "4", "--min-probes", "1", "--top", "2", "--random", "2"]
    args += ["--per-query"]
    args += ["--device", "cpu", "--out", str(out)]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["metric"] == "rmse" and report["higher_is_better"] is False
    assert len(report["candidates"]) == 6 and len(report["probes"]) == 4
    # depth: one canvas per (candidate, probe); random prompts and retrieval reuse cached scores
    assert report["forward_passes"] == report["evaluations"]
    assert halving_cost(6, 4) <= report["evaluations"] <= halving_cost(6, 4) + 2 * 4 + 4
    scores = [c["score"] for c in report["candidates"] if c["probes"] == 4]
    assert report["best"]["score"] == min(scores)
    assert len(report["retrieval"]["queries"]) == 4
    assert "random prompts" in result.output
    # our checkpoint: candidate prompts resized as `painter train` did (depth: bicubic)
    settings = report["settings"]
    assert (settings["target_resize"], settings["prompt_target_resize"]) == ("codec", "bicubic")
    # rerun: everything is cached
    again = cli_runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "report.json").read_text())["forward_passes_this_run"] == 0


@pytest.fixture(scope="module")
def flat_ckpt(tmp_path_factory):
    """A model with every weight zero: it paints the same canvas whatever the prompt."""
    model = build_model("painter-tiny", seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return save_checkpoint(tmp_path_factory.mktemp("flat") / "ckpt", model)


def test_prompt_select_cli_says_what_it_searched_and_reports_ties(
    world, flat_ckpt, tmp_path, cli_runner
):
    out = tmp_path / "sel"
    args = ["prompt-select", "--task", "nyuv2-depth", "--checkpoint", str(flat_ckpt)]
    args += ["--device", "cpu"]
    args += ["--data", str(world["train"]), "--candidates", "64", "--probe-size", "4"]
    args += ["--min-probes", "1", "--random", "10", "--out", str(out)]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "searched 8 of 12 training pairs on 4 probes, 8 random prompts" in text
    assert "warning: --candidates 64: the task has 12 training pairs, 4 held out" in text
    assert "warning: --random 10: only 8 candidates" in text
    assert "all 8 candidates scored the same on the first 1 probes" in text
    assert "no best: 2 candidates tie at rmse" in text
    assert (
        "nyuv2-depth does not measurably depend on the prompt's content on 4 probes: 8 random "
        "prompts spread 0.0000 against a noise of 0.0000" in text
    )
    assert "best " not in text.replace("no best", "")
    report = json.loads((out / "report.json").read_text())
    assert report["searched"]["candidates"] == 8 and report["settings"]["candidates"] == 64
    assert len(report["tied"]) == 2 and report["all_tied"] is True


def test_prompt_commands_default_out_is_named_and_printed(world, tmp_path, monkeypatch, cli_runner):
    monkeypatch.chdir(tmp_path)
    common = ["--task", "nyuv2-depth", "--checkpoint", str(world["ckpt"]), "--device", "cpu"]
    common += ["--data", str(world["train"]), "--probe", str(world["val"]), "--probe-size", "2"]
    select = ["prompt-select", *common, "--candidates", "2", "--min-probes", "1", "--random", "0"]
    tune = ["prompt-tune", *common, "--steps", "1", "--batch-size", "2"]
    for args, folder in ((select, "prompt-select-nyuv2-depth"), (tune, "prompt-tune-nyuv2-depth")):
        result = cli_runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert (tmp_path / folder / "report.json").is_file()
        assert f"-> {folder};" in result.output or f"written to {folder} " in result.output
        assert "None" not in result.output


def test_prompt_select_cli_error_is_one_line(world, tmp_path, cli_runner):
    args = ["prompt-select", "--task", "no-such-task", "--data", str(world["train"])]
    args += ["--checkpoint", str(world["ckpt"]), "--out", str(tmp_path / "x")]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 1
    assert "unknown task 'no-such-task'" in result.output


# --------------------------------------------------------------------------------------------
# Prompt tuning


def assert_frozen(model, before: dict) -> None:
    """Every weight is bitwise as in ``before`` and no gradient is stored on the model."""
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in model.parameters())


def test_tuner_freezes_model_and_lowers_loss_on_a_fixed_batch(world):
    train = ShardReader(world["train"])
    model = build_model("painter-tiny", seed=0).eval()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    store = QueryStore(train, "nyuv2-depth", 32)
    idx = [int(i) for i in train.indices("nyuv2-depth")]
    init = store.pair(idx[0])
    images, targets, valid = store.get(idx[1:5])
    tuner = PromptTuner(model, init, lr=0.05)
    losses = [tuner.step(images, targets, valid) for _ in range(6)]
    tuner.close()
    assert losses[-1] < losses[0]
    tuned = tuner.prompt()
    assert not torch.equal(tuned.image, init.image)
    assert not torch.equal(tuned.target, init.target)
    assert_frozen(model, before)
    assert all(p.requires_grad for p in model.parameters())  # flags restored
    lo = (0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert (tuned.image >= lo.view(3, 1, 1) - 1e-6).all()  # clamped to displayable pixels


def test_tuner_ema_keeps_the_warmed_up_average_of_the_live_prompts(world):
    # timm's ModelEmaV3 with warm-up: the decay of update t is 1 - t**(-2/3) (0 at the first
    # update, 1 - 2**(-2/3) = 0.370039 at the second), capped at ema = 0.5 from the third.
    train = ShardReader(world["train"])
    model = build_model("painter-tiny", seed=0).eval()
    store = QueryStore(train, "nyuv2-depth", 32)
    idx = [int(i) for i in train.indices("nyuv2-depth")]
    init = store.pair(idx[0])
    images, targets, valid = store.get(idx[1:5])
    tuner = PromptTuner(model, init, lr=0.05, ema=0.5)
    assert torch.equal(tuner.prompt().image, init.image)  # before any step: the init
    want_img, want_tgt = None, None
    for decay in (0.0, 0.370039, 0.5, 0.5):
        tuner.step(images, targets, valid)
        live = (tuner.image.detach().clone(), tuner.target.detach().clone())
        if want_img is None:
            want_img, want_tgt = live
        else:
            want_img = decay * want_img + (1 - decay) * live[0]
            want_tgt = decay * want_tgt + (1 - decay) * live[1]
    got = tuner.prompt()
    tuner.close()
    assert torch.allclose(got.image, want_img, atol=1e-5)
    assert torch.allclose(got.target, want_tgt, atol=1e-5)
    assert not torch.allclose(got.image, tuner.image.detach(), atol=1e-4)  # not the live one
    # the state round-trips the average and the warm-up clock
    state = tuner.state_dict()
    assert state["updates"] == 4 and torch.equal(state["ema_image"], got.image)
    other = PromptTuner(model, init, lr=0.05, ema=0.5)
    other.load_state_dict(state)
    assert other.updates == 4 and torch.equal(other.prompt().target, got.target)
    other.close()
    with pytest.raises(PainterError, match="--ema 1.0: expected 0"):
        PromptTuner(model, init, ema=1.0)


def test_scorer_and_tuner_paint_with_the_given_seggpt_type_token(world):
    # A SegGPT model whose two type tokens differ: scoring and tuning with seg_type="semantic"
    # give exactly the semantic token's losses (a checkpoint of ours trained depth with it),
    # not those of the model's default, the instance token.
    train = ShardReader(world["train"])
    model = build_model("painter-tiny", num_type_tokens=2, loss_variant="seggpt", seed=0).eval()
    with torch.no_grad():
        model.type_token_cls.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
        model.type_token_ins.normal_(0, 1.0, generator=torch.Generator().manual_seed(2))
    idx = [int(i) for i in train.indices("nyuv2-depth")]
    kw = {"mode": "loss", "device": "cpu"}
    semantic = ModelScorer(model, train, train, "nyuv2-depth", 32, seg_type="semantic", **kw)
    default = ModelScorer(model, train, train, "nyuv2-depth", 32, **kw)
    prompt = semantic.prompt(idx[0])
    images, targets, valid = semantic.probes.get(idx[1:3])
    imgs, tgts, mask, full = stack_canvases(prompt.image, prompt.target, images, targets, valid, 8)
    with torch.no_grad():
        _, pred = model(imgs, tgts, mask, compute_loss=False, seg_type="semantic")
    want = [float(model.forward_loss(pred[j : j + 1], tgts[j : j + 1], mask[j : j + 1],
                                     full[j : j + 1])) for j in range(2)]  # fmt: skip
    got = semantic.score_prompt(prompt, idx[1:3])
    assert got == pytest.approx(want, rel=1e-5)
    assert default.score_prompt(prompt, idx[1:3]) != pytest.approx(got, rel=1e-3)
    semantic.close()
    default.close()
    tuner = PromptTuner(model, prompt, lr=0.05, seg_type="semantic")
    with torch.no_grad():
        loss, _ = model(imgs, tgts, mask, full, seg_type="semantic")
        assert float(tuner.loss(images, targets, valid)) == pytest.approx(float(loss), rel=1e-5)
    tuner.close()


def test_palette_loss_literal_values():
    from painter_cli.model import normalize

    def canvas(level: float) -> torch.Tensor:  # (1, 3, 4, 4) normalised, one grey level 0..255
        return normalize(torch.full((1, 3, 4, 4), level / 255.0))

    white = canvas(255.0)
    colours = torch.tensor([[0.0, 0.0, 0.0], [255.0, 255.0, 255.0]])
    # logits -L1/10: white vs white 0, vs black -76.5 -> CE = log(1 + e^-76.5) ~ 0
    assert palette_loss(white, white, None, colours).item() < 1e-6
    # mid-grey is 382.5 from both: CE = log 2
    assert palette_loss(canvas(127.5), white, None, colours).item() == pytest.approx(
        math.log(2), 1e-4
    )
    # black painted where white is true: CE = 76.5
    assert palette_loss(canvas(0.0), white, None, colours).item() == pytest.approx(76.5, 1e-3)
    # no palette: black plus the colours present in the targets (here white) -> the same numbers
    assert palette_loss(canvas(127.5), white, None).item() == pytest.approx(math.log(2), 1e-4)
    # pixels with valid 0 do not count
    pred = canvas(127.5).clone()
    pred[..., :2] = white[..., :2]
    valid = torch.zeros(1, 3, 4, 4)
    valid[..., 2:] = 1
    assert palette_loss(pred, white, valid, colours).item() == pytest.approx(math.log(2), 1e-4)


def test_resolve_objective_and_palettes():
    from painter_cli.tasks import get_codec

    assert resolve_objective("semseg") == resolve_objective("instance") == "loss"
    assert resolve_objective("instance", "palette") == "palette"
    assert resolve_objective("keypoints", "heatmap") == "heatmap"
    assert resolve_objective("depth") == resolve_objective("keypoints") == "loss"
    assert resolve_objective("semseg", "loss") == "loss"
    with pytest.raises(PainterError, match="palette task"):
        resolve_objective("depth", "palette")
    with pytest.raises(PainterError, match="keypoints task"):
        resolve_objective("semseg", "heatmap")
    with pytest.raises(PainterError, match="--objective"):
        resolve_objective("semseg", "nope")
    assert resolve_objective("restoration", "psnr") == "psnr"
    with pytest.raises(PainterError, match="restoration task"):
        resolve_objective("depth", "psnr")
    # ADE20K: its 150 class colours (class 1 white); with black as a class it comes first
    ade = codec_palette(get_codec("ade20k-semseg"))
    assert ade.shape == (150, 3) and ade[0].tolist() == [255.0, 255.0, 255.0]
    fg = codec_palette(get_codec("semseg", num_classes=1, base=2, background=True))
    assert fg.tolist() == [[0.0, 0.0, 0.0], [255.0, 255.0, 255.0]]
    assert codec_palette(get_codec("coco-instance")) is None  # 6400 colours: per batch instead
    # keypoints: the (G, B) class colours, base-3 code with step 85 for 7 keypoints
    kp = codec_palette(get_codec("keypoints", num_keypoints=7, width=8, height=8))
    assert kp.shape == (7, 2) and kp[:4].tolist() == [[255, 255], [255, 170], [255, 85], [170, 255]]


def test_psnr_loss_literal_values():
    from painter_cli.model import normalize
    from painter_cli.prompts import psnr_loss

    truth = torch.full((2, 3, 4, 4), 0.5)
    painted = truth.clone()
    painted[0] += 0.1  # MSE 0.01: 20 dB
    painted[1] += 0.01  # MSE 1e-4: 40 dB
    pred = normalize(painted).requires_grad_(True)
    loss = psnr_loss(pred, normalize(truth), None)
    assert float(loss.detach()) == pytest.approx(-30.0, abs=1e-3)  # minus the mean of 20, 40 dB
    loss.backward()
    assert pred.grad.abs().sum() > 0
    # pixels out of [0, 1] are clipped as decoded; invalid pixels do not count
    painted = truth.clone()
    painted[:, :, :2] = 1.7  # clipped to 1: error 0.5 on the top half
    valid = torch.ones_like(truth)
    valid[:, :, :2] = 0
    assert float(psnr_loss(normalize(painted), normalize(truth), valid)) == pytest.approx(-100.0)
    expect = -10 * math.log10(0.5**2 / 2)  # half the pixels off by 0.5
    assert float(psnr_loss(normalize(painted), normalize(truth), None)) == pytest.approx(
        -expect, abs=1e-3
    )


def _keypoint_canvas(points, size=8):
    """(1, 3, S, S) normalised: keypoint k at ``points[k]`` (x, y) painted as R 255 and its class
    (G, B), the other 7 keypoints absent."""
    from painter_cli.model import normalize
    from painter_cli.tasks.keypoints import keypoint_colours

    cols = keypoint_colours(7)
    img = torch.zeros(1, 3, size, size)
    for k, (x, y) in points.items():
        img[0, :, y, x] = torch.tensor([255.0, *map(float, cols[k])])
    return normalize(img / 255.0), torch.from_numpy(cols.astype(np.float32))


def test_heatmap_loss_literal_values():
    from painter_cli.model import normalize

    # keypoints 0 and 6: classes (255, 255) and (85, 255), 170 apart (P of the other ~ e^-17)
    truth, cols = _keypoint_canvas({0: (2, 3), 6: (5, 6)})

    # At a peak painted in its exact class colour the class probability p is the softmax of
    # -L1/10 over the 7 colours and (0, 0): its neighbours 85 away count e^-8.5 each.
    def p_own(k):
        table = torch.cat([cols, torch.zeros(1, 2)])
        return torch.softmax(-(table - cols[k]).abs().sum(1) / 10, 0)[k].item()

    def ce(logit_true, logit_peak):  # the true pixel's logit, a wrong peak, 62 zeros
        return math.log(math.exp(logit_peak) + 62 + math.exp(logit_true)) - logit_true

    # painted = truth: the true pixel holds the logit p / 0.05 (p ~ 1), the other 63 pixels 0
    expected = sum(math.log(math.exp(p_own(k) / 0.05) + 63) - p_own(k) / 0.05 for k in (0, 6)) / 2
    assert heatmap_loss(truth, truth, None, cols).item() == pytest.approx(expected, abs=1e-6)
    assert expected < 1e-6
    # a black painting: no heat anywhere, uniform over the 64 pixels -> log 64
    black = normalize(torch.zeros(1, 3, 8, 8))
    assert heatmap_loss(black, truth, None, cols).item() == pytest.approx(math.log(64), 1e-5)
    # both peaks painted at swapped places: each true pixel has heat 0, the wrong one heat 1
    swapped, _ = _keypoint_canvas({0: (5, 6), 6: (2, 3)})
    expected = (ce(0.0, p_own(0) / 0.05) + ce(0.0, p_own(6) / 0.05)) / 2
    assert heatmap_loss(swapped, truth, None, cols).item() == pytest.approx(expected, 1e-5)
    assert expected == pytest.approx(20, abs=0.01)
    # a target without valid pixels or without keypoints counts for nothing
    assert heatmap_loss(black, truth, torch.zeros(1, 3, 8, 8), cols).item() == 0.0
    assert heatmap_loss(black, black, None, cols).item() == 0.0


def test_palette_tuner_freezes_model_and_lowers_its_objective(world):
    train = ShardReader(world["train"])
    model = build_model("painter-tiny", seed=0).eval()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    store = QueryStore(train, "ade20k-semseg", 32)
    idx = [int(i) for i in train.indices("ade20k-semseg")]
    images, targets, valid = store.get(idx[1:5])
    colours = codec_palette(train.codec("ade20k-semseg"))
    tuner = PromptTuner(model, store.pair(idx[0]), lr=0.05, objective="palette", colours=colours)
    losses = [tuner.step(images, targets, valid) for _ in range(6)]
    tuner.close()
    assert losses[-1] < losses[0]
    assert_frozen(model, before)


@pytest.fixture(scope="module")
def keypoint_shards(tmp_path_factory):
    """8 synthetic-keypoints samples at 32 px (7 keypoints), real shards."""
    from painter_cli.defaults import encode_synthetic

    out = tmp_path_factory.mktemp("kp") / "train"
    encode_synthetic(out, task="synthetic-keypoints", size=32, count=8)
    return out


def test_heatmap_tuner_freezes_model_and_lowers_its_objective(keypoint_shards):
    train = ShardReader(keypoint_shards)
    model = build_model("painter-tiny", seed=0).eval()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    store = QueryStore(train, "synthetic-keypoints", 32)
    images, targets, valid = store.get(list(range(1, 5)))
    colours = codec_palette(train.codec("synthetic-keypoints"))
    assert colours.shape == (7, 2)
    tuner = PromptTuner(model, store.pair(0), lr=0.05, objective="heatmap", colours=colours)
    losses = [tuner.step(images, targets, valid) for _ in range(6)]
    tuner.close()
    assert math.log(32 * 32) - 1 < losses[0] < math.log(32 * 32) + 1  # an untrained model: ~flat
    assert losses[-1] < losses[0]
    assert_frozen(model, before)
    with pytest.raises(PainterError, match="class colours"):
        PromptTuner(model, store.pair(0), objective="heatmap")


def _tune_args(world, out, steps, *extra):
    args = ["prompt-tune", "--task", "nyuv2-depth", "--checkpoint", str(world["ckpt"])]
    args += ["--data", str(world["train"]), "--steps", str(steps), "--lr", "0.05"]
    args += ["--batch-size", "4", "--probe-size", "3", "--val-every", "3", "--save-every", "3"]
    return [*args, "--device", "cpu", "--out", str(out), *extra]


def test_prompt_tune_says_whether_the_prompt_matters_first(world, flat_ckpt, tmp_path, cli_runner):
    args = _tune_args(world, tmp_path / "flat", 1, "--random", "4")
    args[args.index(str(world["ckpt"]))] = str(flat_ckpt)
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    said = text.index("nyuv2-depth does not measurably depend on the prompt's content on 3 probes")
    assert said < text.index("initial")
    assert "the metric's noise on these probes: 0.0000 (the task does not measurably" in text
    report = json.loads((tmp_path / "flat" / "report.json").read_text())
    assert report["dependence"]["matters"] is False and report["dependence"]["prompts"] == 4
    assert report["settings"]["random"] == 4
    # --random 0: no check, no line
    args = _tune_args(world, tmp_path / "none", 1, "--random", "0")
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0 and "depend" not in result.output
    assert "dependence" not in json.loads((tmp_path / "none" / "report.json").read_text())


def test_prompt_tune_objective_option(world, tmp_path, cli_runner):
    bad = cli_runner.invoke(app, _tune_args(world, tmp_path / "a", 2, "--objective", "palette"))
    assert bad.exit_code == 1 and "--objective palette needs a palette task" in bad.output
    args = _tune_args(world, tmp_path / "b", 2, "--objective", "palette")
    args[args.index("nyuv2-depth")] = "ade20k-semseg"
    ok = cli_runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["objective"] == "palette" and report["metric"] == "miou"
    bad = cli_runner.invoke(app, _tune_args(world, tmp_path / "c", 2, "--objective", "auto"))
    assert bad.exit_code == 1 and "expected loss, palette, heatmap" in bad.output


def test_prompt_tune_heatmap_objective_on_keypoints(world, keypoint_shards, tmp_path, cli_runner):
    args = _tune_args(world, tmp_path / "kp", 2, "--objective", "heatmap")
    args[args.index("nyuv2-depth")] = "keypoints"  # the kind: one task of the data has it
    args[args.index(str(world["train"]))] = str(keypoint_shards)
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "kp" / "report.json").read_text())
    assert report["objective"] == "heatmap" and report["metric"] == "ap"
    assert report["task"] == "synthetic-keypoints"


def test_prompt_tune_cli_outputs_round_trip_and_resume(world, tmp_path, cli_runner):
    straight = tmp_path / "straight"
    result = cli_runner.invoke(app, _tune_args(world, straight, 6))
    assert result.exit_code == 0, result.output
    report = json.loads((straight / "report.json").read_text())
    assert report["metric"] == "rmse" and report["higher_is_better"] is False
    assert [h["step"] for h in report["history"]] == [0, 3, 6]
    assert report["initial"] == report["history"][0]["score"]
    assert report["tuned"] == min(h["score"] for h in report["history"])
    # the exact tensors, and PNGs that are their de-normalised pixels
    prompt = load_prompt_tensors(straight / "prompt.safetensors")
    assert prompt.image.shape == prompt.target.shape == (3, 32, 32)
    png = np.asarray(Image.open(straight / "image.png"))
    assert np.array_equal(
        png, to_uint8(denormalize(prompt.image[None])[0].permute(1, 2, 0).numpy())
    )
    # predict's prompt loader prefers prompt.safetensors, bit-exact
    (loaded,) = load_prompts([str(straight)], None)
    assert torch.equal(loaded.image, prompt.image) and torch.equal(loaded.target, prompt.target)

    # interrupted after 3 steps, then resumed to 6: the same state as the straight run
    split = tmp_path / "split"
    assert cli_runner.invoke(app, _tune_args(world, split, 3)).exit_code == 0
    refused = cli_runner.invoke(app, _tune_args(world, split, 6))
    assert refused.exit_code == 1 and "--resume" in refused.output
    resumed = cli_runner.invoke(app, _tune_args(world, split, 6, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(straight / "tune_state.pt", weights_only=True)
    b = torch.load(split / "tune_state.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    assert torch.allclose(a["tuner"]["image"], b["tuner"]["image"], atol=1e-6)
    assert torch.allclose(a["tuner"]["target"], b["tuner"]["target"], atol=1e-6)
    assert [h["step"] for h in b["history"]] == [0, 3, 6]


def test_prompt_tune_ema_resumes_to_the_straight_run(world, tmp_path, cli_runner):
    straight = tmp_path / "straight"
    assert cli_runner.invoke(app, _tune_args(world, straight, 6, "--ema", "0.8")).exit_code == 0
    report = json.loads((straight / "report.json").read_text())
    assert report["ema"] == 0.8
    split = tmp_path / "split"
    assert cli_runner.invoke(app, _tune_args(world, split, 3, "--ema", "0.8")).exit_code == 0
    other = cli_runner.invoke(app, _tune_args(world, split, 6, "--resume"))  # without --ema
    assert other.exit_code == 1 and "other settings" in other.output
    resumed = cli_runner.invoke(app, _tune_args(world, split, 6, "--ema", "0.8", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(straight / "tune_state.pt", weights_only=True)["tuner"]
    b = torch.load(split / "tune_state.pt", weights_only=True)["tuner"]
    assert a["updates"] == b["updates"] == 6
    assert torch.allclose(a["ema_image"], b["ema_image"], atol=1e-6)
    assert torch.allclose(a["ema_target"], b["ema_target"], atol=1e-6)
    # the kept prompt (the last step validates best here) is the average, not the live prompt
    kept = load_prompt_tensors(straight / "prompt.safetensors")
    assert report["best_step"] == 6
    assert torch.equal(kept.image, a["ema_image"]) and torch.equal(kept.target, a["ema_target"])
    assert not torch.allclose(kept.image, a["image"], atol=1e-4)
    bad = cli_runner.invoke(app, _tune_args(world, tmp_path / "bad", 2, "--ema", "1.5"))
    assert bad.exit_code == 1 and "--ema 1.5: expected 0 (off) or a decay in (0, 1)" in bad.output


def test_prompt_tune_from_selected_prompt_feeds_predict(world, tmp_path, cli_runner):
    init = tmp_path / "init"
    train = ShardReader(world["train"])
    sample = train[int(train.indices("nyuv2-depth")[0])]
    init.mkdir()
    Image.fromarray(sample["image"]).save(init / "image.png")
    Image.fromarray(sample["target"]).save(init / "target.png")
    out = tmp_path / "tuned"
    result = cli_runner.invoke(app, _tune_args(world, out, 2, "--init", str(init)))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "report.json").read_text())["init"].startswith(str(init))
    queries = tmp_path / "q"
    queries.mkdir()
    Image.fromarray(sample["image"]).save(queries / "a.png")
    pred = tmp_path / "pred"
    args = ["predict", str(queries), "--prompt", str(out), "-c", str(world["ckpt"])]
    result = cli_runner.invoke(app, [*args, "--device", "cpu", "--out", str(pred)])
    assert result.exit_code == 0, result.output
    config = json.loads((pred / "predict_config.json").read_text())
    assert config["prompts"] == [str(out / "prompt.safetensors")]


# --------------------------------------------------------------------------------------------
# One group (concept) at a time


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """12 depth pairs in groups g0, g1, g2 (sample k in g{k % 3}: 4 pairs a group)."""
    return write_shards(
        tmp_path_factory.mktemp("grouped") / "train", ("nyuv2-depth",), n=12, size=(24, 32),
        groups=3,
    )  # fmt: skip


def test_split_indices_by_group_stays_in_the_group(grouped, world):
    train = ShardReader(grouped)
    members = {g: set(map(int, idx)) for g, idx in train.groups("nyuv2-depth").items()}
    assert sorted(members) == ["g0", "g1", "g2"] and all(len(m) == 4 for m in members.values())
    cands, probes = split_indices(train, "nyuv2-depth", None, 1, seed=2, group="g1")
    assert len(probes) == 1 and len(cands) == 3
    assert set(cands) | set(probes) == members["g1"] and not set(cands) & set(probes)
    # 4 pairs cannot give 8 probes and a candidate: half of them probe
    cands, probes = split_indices(train, "nyuv2-depth", None, 8, group="g2")
    assert len(probes) == 2 and set(cands) | set(probes) == members["g2"]
    with pytest.raises(PainterError, match="group 'nope' of 'nyuv2-depth' has 0 training pairs"):
        split_indices(train, "nyuv2-depth", None, 1, group="nope")


def test_cross_selection_scores_candidates_on_each_other_never_on_themselves(grouped, tmp_path):
    train = ShardReader(grouped)
    g1 = sorted(map(int, train.groups("nyuv2-depth")["g1"]))
    cands, probes = split_indices(train, "nyuv2-depth", None, 8, group="g1", cross=True)
    assert sorted(cands) == sorted(probes) == g1  # every pair both, none held back
    cands3, probes2 = split_indices(train, "nyuv2-depth", 3, 2, group="g1", cross=True)
    assert cands3 == cands[:3] and probes2 == cands[:2]
    with pytest.raises(PainterError, match="takes no --probe"):
        split_indices(train, "nyuv2-depth", None, 2, probe_reader=train, cross=True)
    # a pair prompting itself would copy its own target: give it the best score to be sure
    quality = {c: float(k) for k, c in enumerate(cands)}
    self_copy = {c: 100.0 for c in cands}

    class Scorer(Counting):
        def __call__(self, candidate, probes):
            out = super().__call__(candidate, probes)
            return [self_copy[c] if c == candidate else v for c, v in zip(probes, out, strict=True)]

    score = Scorer(quality)
    report = select_prompts(
        train, "nyuv2-depth", cands, probes, score, out=tmp_path / "x", metric="toy",
        higher_is_better=True, random=4, min_probes=4, progress=False, cross=True, group="g1",
    )  # fmt: skip
    assert score.calls and all(c != p for c, p in score.calls)
    assert report["best"]["index"] == cands[-1]
    # each candidate's score is its mean over the other probes
    for row in report["candidates"]:
        others = [p for p in probes if p != row["index"]]
        expect = np.mean([quality[row["index"]] + 0.001 * ((p * 7) % 5) for p in others])
        assert row["score"] == pytest.approx(expect)
    assert report["searched"]["cross"] is True and report["searched"]["overlap"] == 4
    assert report["warnings"] == []  # overlap by design is not warned about
    rows = [[quality[r["index"]] + 0.001 * ((p * 7) % 5) for p in probes] for r in report["random"]]
    skip = [[p == r["index"] for p in probes] for r in report["random"]]
    assert report["dependence"] == probe_dependence(rows, skip).to_json()
    # without cross the same call scores every pair on itself and warns
    plain = select_prompts(
        train, "nyuv2-depth", cands, probes, Scorer(quality), out=tmp_path / "y", metric="toy",
        higher_is_better=True, random=4, min_probes=4, progress=False,
    )  # fmt: skip
    assert any("also candidates" in w for w in plain["warnings"])
    assert plain["candidates"][0]["score"] > 20  # the self-copy wins there


def test_group_option_errors_are_one_line(world, grouped, tmp_path, cli_runner):
    base = ["prompt-select", "--task", "nyuv2-depth", "--checkpoint", str(world["ckpt"])]
    base += ["--device", "cpu", "--out", str(tmp_path / "x")]
    result = cli_runner.invoke(app, [*base, "--data", str(world["train"]), "--group", "g0"])
    assert result.exit_code == 1 and "has no sample groups" in result.output
    result = cli_runner.invoke(app, [*base, "--data", str(grouped), "--group", "g7"])
    assert result.exit_code == 1
    assert "--group g7: no such group of 'nyuv2-depth'" in " ".join(result.output.split())
    assert "g0, g1, g2" in result.output
    args = [*base, "--data", str(grouped), "--group", "g0", "--probe", str(world["val"])]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 1 and "the --probe shards hold no sample of it" in result.output
    result = cli_runner.invoke(app, [*args, "--cross"])
    assert result.exit_code == 1 and "--cross scores the candidates on each other" in result.output
    args = [*base, "--data", str(grouped), "--group", "g0", "--cross", "--per-query"]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 1 and "--per-query with --cross" in result.output


def test_prompt_select_one_group(world, grouped, tmp_path, cli_runner):
    out = tmp_path / "g1"
    args = ["prompt-select", "--task", "nyuv2-depth", "--checkpoint", str(world["ckpt"])]
    args += ["--data", str(grouped), "--group", "g1", "--probe-size", "2", "--min-probes", "1"]
    args += ["--random", "2", "--device", "cpu", "--out", str(out)]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    train = ShardReader(grouped)
    group = {train.sample_id(int(i)) for i in train.groups("nyuv2-depth")["g1"]}
    assert report["group"] == "g1" and report["settings"]["group"] == ["g1"]
    assert {c["id"] for c in report["candidates"]} | set(report["probes"]) == group
    assert report["searched"] == {
        "pairs": 4, "candidates": 2, "probes": 2, "random": 2, "overlap": 0, "cross": False
    }  # fmt: skip
    assert "searched 2 of 4 training pairs on 2 probes" in " ".join(result.output.split())


def test_prompt_select_cross_searches_every_pair_of_a_group(world, grouped, tmp_path, cli_runner):
    out = tmp_path / "g2"
    args = ["prompt-select", "--task", "nyuv2-depth", "--checkpoint", str(world["ckpt"])]
    args += ["--data", str(grouped), "--group", "g2", "--cross", "--candidates", "all", "-m", "4"]
    args += ["--random", "3", "--min-probes", "4", "--device", "cpu", "--out", str(out)]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    train = ShardReader(grouped)
    group = {train.sample_id(int(i)) for i in train.groups("nyuv2-depth")["g2"]}
    assert {c["id"] for c in report["candidates"]} == set(report["probes"]) == group
    assert report["searched"] == {
        "pairs": 4, "candidates": 4, "probes": 4, "random": 3, "overlap": 4, "cross": True
    }  # fmt: skip
    assert report["warnings"] == [] and report["settings"]["cross"] is True
    assert "on 4 probes (each on the others, --cross)" in " ".join(result.output.split())
    scores = json.loads((out / "scores.json").read_text())["scores"]
    for c in report["candidates"]:  # every other pair scored, never itself
        row = scores[str(c["index"])]
        assert row[str(c["index"])] is None
        assert sum(v is not None for v in row.values()) == 3


def test_prompt_select_and_tune_every_group(world, grouped, tmp_path, cli_runner):
    train = ShardReader(grouped)
    members = {g: {train.sample_id(int(i)) for i in idx}
               for g, idx in train.groups("nyuv2-depth").items()}  # fmt: skip
    common = ["--task", "nyuv2-depth", "--checkpoint", str(world["ckpt"]), "--device", "cpu"]
    common += ["--data", str(grouped), "--group", "all", "--probe-size", "2", "--random", "0"]
    out = tmp_path / "sel"
    args = ["prompt-select", *common, "--min-probes", "1", "--out", str(out)]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "report.json").read_text())
    assert [row["group"] for row in summary["groups"]] == ["g0", "g1", "g2"]
    for row in summary["groups"]:
        g = row["group"]
        report = json.loads((out / g / "report.json").read_text())
        assert report["group"] == g and row["best"] == report["best"]["id"]
        assert {c["id"] for c in report["candidates"]} | set(report["probes"]) == members[g]
        assert (out / g / "image.png").is_file() and row["prompt"] == str(out / g)
    assert "3 groups ->" in result.output and "one search per group" in result.output
    # prompt-tune: one prompt per group, each tuned and validated on its own group
    out = tmp_path / "tune"
    args = ["prompt-tune", *common, "--steps", "1", "--batch-size", "2", "--out", str(out)]
    result = cli_runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "report.json").read_text())
    assert [row["group"] for row in summary["groups"]] == ["g0", "g1", "g2"]
    for g in ("g0", "g1", "g2"):
        report = json.loads((out / g / "report.json").read_text())
        assert report["group"] == g and report["init"] in members[g]
        assert load_prompt_tensors(out / g / "prompt.safetensors").image.shape == (3, 32, 32)
    assert "3 prompts ->" in result.output


def test_candidate_prompts_follow_the_checkpoints_target_resize(world):
    from painter_cli.model import denormalize

    train = ShardReader(world["train"])
    i = int(train.indices("ade20k-semseg")[0])
    codec = train.codec("ade20k-semseg")
    palette = {tuple(c) for c in codec.colours.tolist()} | {(0, 0, 0)}

    def colours(mode):
        p = QueryStore(train, "ade20k-semseg", 32, target_resize=mode).pair(i)
        rgb = denormalize(p.target[None])[0].permute(1, 2, 0).numpy() * 255
        return {tuple(int(v) for v in c) for c in np.clip(np.round(rgb), 0, 255).reshape(-1, 3)}

    assert colours(None) <= palette  # the codec's rule: a discrete target resized nearest
    assert colours("nearest") <= palette
    assert not colours("bicubic") <= palette  # the released Painter's: colours blend at borders


def test_a_one_class_task_without_background_is_scored_by_foreground_iou():
    # Its mIoU is 100 whatever is painted (black is unlabelled): every prompt would tie.
    from painter_cli.prompts import resolve_scoring
    from painter_cli.tasks import get_codec

    edges = get_codec("semseg", num_classes=1)
    assert resolve_scoring("semseg", "auto", edges) == ("metric", "fg_iou", True)
    assert resolve_scoring("semseg", "auto") == ("metric", "miou", True)
