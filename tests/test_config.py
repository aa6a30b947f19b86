"""Run configs: presets, TOML files, --set overrides, unknown keys, the TOML writer round trip."""

from __future__ import annotations

import pytest
import tomllib

from painter_cli import config as c
from painter_cli.errors import PainterError
from painter_cli.model import PRESETS as MODEL_PRESETS


def test_every_preset_resolves_to_a_known_model():
    for name in c.PRESETS:
        cfg = c.resolve(preset=name)
        assert cfg.preset == name
        assert cfg.model.preset in MODEL_PRESETS


def test_default_preset_is_tiny_on_the_tiny_model():
    cfg = c.resolve()
    assert cfg.preset == "tiny"
    assert cfg.model.preset == "painter-tiny"
    assert cfg.optim.batch_size == 4


def test_paper_preset_is_the_published_recipe():
    cfg = c.resolve(preset="painter-vit-large")
    assert cfg.model.preset == "painter-vit-large"
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas) == (1e-3, 0.05, [0.9, 0.999])
    assert (cfg.schedule.steps, cfg.schedule.warmup_steps) == (54000, 5400)
    assert cfg.model.drop_path_rate == 0.1
    assert cfg.mask.ratio == 0.75 and cfg.mask.patches == 0
    assert cfg.optim.batch_size == 2048


def test_code_preset_is_what_the_released_script_ran():
    cfg = c.resolve(preset="painter-vit-large-code")
    assert (cfg.schedule.epochs, cfg.schedule.warmup_epochs, cfg.schedule.steps) == (15.0, 1.0, 0)
    assert (cfg.optim.weight_decay, cfg.optim.layer_decay, cfg.optim.clip_grad) == (0.1, 0.8, 3.0)
    assert (cfg.mask.patches, cfg.mask.max_block, cfg.mask.min_block) == (784, 392, 16)
    assert cfg.optim.batch_size == 2048 and cfg.optim.micro_batch == 2


def test_toml_file_overrides_the_preset_and_set_overrides_the_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        'preset = "painter-vit-large"\n[optim]\nlr = 2e-4\nbatch_size = 64\n'
        '[data]\nweights = { "my-task" = 0.3 }\n'
    )
    cfg = c.resolve(
        path, overrides=["optim.lr=5e-5", "run.init=mae:/w/mae.pth", "data.weights.other=1"]
    )
    assert cfg.preset == "painter-vit-large"
    assert cfg.schedule.steps == 54000  # from the preset
    assert cfg.optim.batch_size == 64  # from the file
    assert cfg.optim.lr == 5e-5  # from --set
    assert cfg.run.init == "mae:/w/mae.pth"  # a bare word is a string
    assert cfg.data.weights == {"my-task": 0.3, "other": 1.0}


def test_preset_argument_wins_over_the_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('preset = "painter-vit-large"\n')
    assert c.resolve(path, preset="tiny").model.preset == "painter-tiny"


def test_set_parses_toml_literals():
    cfg = c.resolve(
        overrides=["data.second_crop=false", "optim.betas=[0.9, 0.95]", "mask.patches=10"]
    )
    assert cfg.data.second_crop is False
    assert cfg.optim.betas == [0.9, 0.95]
    assert cfg.mask.patches == 10


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optim.lrr=1", "optim.lrr"),
        ("optimizer.lr=1", "optimizer"),
        ("optim.lr=fast", "optim.lr"),
        ("optim.batch_size=2.5", "optim.batch_size"),
        ("lr=1", "section.key"),
    ],
)
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(PainterError) as exc:
        c.resolve(overrides=[override])
    assert needle in exc.value.message


def test_steps_below_one_say_so():
    # It said "no schedule length" for --steps -3.
    with pytest.raises(PainterError, match=r"^--steps must be >= 1, got -3$"):
        c.apply_flags(c.resolve(), steps=-3)
    with pytest.raises(PainterError, match=r"^--steps must be >= 1, got 0$"):
        c.apply_flags(c.resolve(), steps=0)
    assert c.apply_flags(c.resolve(), steps=1).schedule.steps == 1


def test_unknown_key_in_a_file_names_key_and_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[schedule]\nstepz = 3\n")
    with pytest.raises(PainterError) as exc:
        c.resolve(path)
    assert "schedule.stepz" in exc.value.message and str(path) in exc.value.message


def test_unknown_preset_and_bad_toml(tmp_path):
    with pytest.raises(PainterError, match="unknown preset 'huge'"):
        c.resolve(preset="huge")
    bad = tmp_path / "x.toml"
    bad.write_text("[optim\n")
    with pytest.raises(PainterError, match="not valid TOML"):
        c.resolve(bad)


def test_written_toml_reads_back_equal(tmp_path):
    cfg = c.resolve(
        preset="painter-vit-large-code",
        overrides=['data.paths=["/d/a", "/d/b"]', "data.weights.x-y=0.25", "run.init=mae:/m.pth"],
    )
    path = c.write_toml(cfg, tmp_path / "config.toml")
    assert tomllib.loads(path.read_text())["optim"]["weight_decay"] == 0.1
    assert c.load_run_config(path) == cfg
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temp file


def test_cli_flags_are_the_last_layer():
    cfg = c.resolve(preset="painter-vit-large-code")
    c.apply_flags(
        cfg, steps=100, batch_size=64, seed=3, data=["/a"], val_data=["/v"], init="mae:/m"
    )
    assert (cfg.schedule.steps, cfg.schedule.warmup_steps, cfg.schedule.epochs) == (100, 7, 0)
    assert (cfg.optim.batch_size, cfg.run.seed, cfg.run.init) == (64, 3, "mae:/m")
    assert (cfg.data.paths, cfg.data.val_paths) == (["/a"], ["/v"])
    cfg = c.apply_flags(c.resolve(preset="painter-vit-large"), steps=1000)
    assert (cfg.schedule.steps, cfg.schedule.warmup_steps) == (1000, 100)  # 10 %, as 5400/54000


def test_task_options_from_a_file_and_set_merge_per_key(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        '[data.task_options."synthetic-segment"]\npair_by_group = true\nrecolor = true\n'
        'fg_weight = 4\n[data.task_options.edges]\nfg_weight = "auto"\n'
    )
    cfg = c.resolve(
        path,
        overrides=[
            "data.task_options.synthetic-segment.prompt_mask=0.25",
            "data.task_options.new-task.recolor=true",
        ],
    )
    opts = cfg.data.task_options
    assert opts["synthetic-segment"] == c.TaskOptions(True, True, 4.0, 0.25)
    assert opts["edges"] == c.TaskOptions(fg_weight="auto")
    assert opts["new-task"] == c.TaskOptions(recolor=True)
    assert c.DataSection().task_options == {}  # default: the official behaviour for every task
    assert c.TaskOptions() == c.TaskOptions(False, False, 1.0, 0.0)
    written = c.write_toml(cfg, tmp_path / "config.toml")
    assert (
        '\n[data.task_options."synthetic-segment"]\npair_by_group = true\n' in written.read_text()
    )
    assert c.load_run_config(written) == cfg  # read back on --resume


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("data.task_options.seg.recolour=true", "data.task_options.seg: unknown key 'recolour'"),
        ("data.task_options.seg.fg_weight=heavy", 'fg_weight: expected a number > 0 or "auto"'),
        ("data.task_options.seg.fg_weight=0", "data.task_options.seg.fg_weight: must be > 0"),
        ("data.task_options.seg.prompt_mask=1.5", "prompt_mask: must be in [0, 1]"),
        ("data.task_options.seg.recolor=3", "data.task_options.seg.recolor: expected bool"),
        (
            "data.task_options.seg.seg_type=panoptic",
            'seg.seg_type: expected "semantic", "instance"',
        ),
    ],
)
def test_bad_task_options_name_the_key(override, needle):
    with pytest.raises(PainterError) as exc:
        c.resolve(overrides=[override])
    assert needle in exc.value.message


def test_unknown_task_option_in_a_file_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[data.task_options.seg]\npair_by_groups = true\n")
    with pytest.raises(PainterError) as exc:
        c.resolve(path)
    assert "data.task_options.seg: unknown key 'pair_by_groups'" in exc.value.message
    assert str(path) in exc.value.message and "pair_by_group" in exc.value.hint
