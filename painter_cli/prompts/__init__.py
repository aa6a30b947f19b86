"""Prompt selection and prompt tuning: the paper's "searched" and "learned" prompts (spec section 8).

One concern a module:

- ``halving``: successive halving over candidates and the per-(candidate, probe) score cache
  (``OUT/scores.json``), so an interrupted search resumes;
- ``scoring``: a prompt's score on probe queries with a frozen model (the per-query headline
  metric, or the masked loss for tasks without a metric on shards);
- ``dependence``: whether a task's scores depend on the prompt at all (spread against noise);
- ``retrieval``: per-query prompts, the most similar candidate by pixels or encoder features;
- ``selection``: the candidate/probe split and ``select_prompts`` (search, report, ``top/``);
- ``objectives`` and ``tuning``: what tuning minimises, and ``PromptTuner``/``tune_prompt`` (a
  learnable prompt pair in front of the frozen model, validated on probes, resumable);
- ``files``: prompt folders and ``prompt.safetensors``;
- ``run``: the settings and runs of ``painter prompt-select`` / ``painter prompt-tune``.

The task view the scorer evaluates probes through is ``painter_cli.shards.TaskView`` (beside the
reader it views), re-exported here. Every name below is importable from ``painter_cli.prompts``.
"""

from painter_cli.prompts.dependence import (
    SIGNAL_RATIO,
    Dependence,
    probe_dependence,
    prompt_dependence,
    verdict,
)
from painter_cli.prompts.files import (
    REPORT_FILE,
    TOP_DIR,
    load_prompt,
    safe_name,
    sample_id,
    save_prompt,
    write_pair,
    write_top,
)
from painter_cli.prompts.halving import (
    SCORES_FILE,
    HalvingResult,
    ScoreCache,
    ScoreFn,
    halving_cost,
    halving_schedule,
    successive_halving,
)
from painter_cli.prompts.objectives import (
    HEAT_TEMPERATURE,
    OBJECTIVES,
    PALETTE_TEMPERATURE,
    codec_palette,
    heatmap_loss,
    palette_loss,
    psnr_loss,
    resolve_objective,
)
from painter_cli.prompts.retrieval import (
    FEATURES,
    describe,
    encoder_descriptor,
    pixel_descriptor,
    retrieve,
)
from painter_cli.prompts.run import (
    SelectSettings,
    TuneSettings,
    parse_count,
    run_select,
    run_tune,
    with_suite_defaults,
)
from painter_cli.prompts.scoring import (
    SCORE_MODES,
    ModelScorer,
    QueryStore,
    resolve_scoring,
    stack_canvases,
)
from painter_cli.prompts.selection import select_prompts, split_indices
from painter_cli.prompts.tuning import TUNE_STATE, PromptTuner, TuneState, tune_prompt
from painter_cli.shards import TaskView

__all__ = [
    "FEATURES",
    "HEAT_TEMPERATURE",
    "OBJECTIVES",
    "PALETTE_TEMPERATURE",
    "REPORT_FILE",
    "SCORES_FILE",
    "SCORE_MODES",
    "SIGNAL_RATIO",
    "TOP_DIR",
    "TUNE_STATE",
    "HalvingResult",
    "ModelScorer",
    "PromptTuner",
    "QueryStore",
    "ScoreCache",
    "ScoreFn",
    "SelectSettings",
    "TaskView",
    "TuneSettings",
    "TuneState",
    "Dependence",
    "codec_palette",
    "describe",
    "encoder_descriptor",
    "halving_cost",
    "halving_schedule",
    "heatmap_loss",
    "psnr_loss",
    "load_prompt",
    "palette_loss",
    "parse_count",
    "pixel_descriptor",
    "probe_dependence",
    "prompt_dependence",
    "resolve_objective",
    "resolve_scoring",
    "retrieve",
    "run_select",
    "run_tune",
    "safe_name",
    "sample_id",
    "save_prompt",
    "select_prompts",
    "split_indices",
    "stack_canvases",
    "successive_halving",
    "tune_prompt",
    "verdict",
    "with_suite_defaults",
    "write_pair",
    "write_top",
]
