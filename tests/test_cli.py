"""The root CLI: help, version, error handling, and a real subprocess run of ``painter``."""

from __future__ import annotations

import subprocess
import sys

import typer

from painter_cli import __version__
from painter_cli.cli import COMMANDS, _PainterGroup, _state, app
from painter_cli.errors import PainterError


def test_version(cli_runner):
    result = cli_runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"painter {__version__}"


def test_help_lists_registered_commands(cli_runner):
    result = cli_runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for module_name, _ in COMMANDS:
        assert module_name.replace("_", "-") in result.output


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys; from painter_cli.cli import app; "
        "heavy = [m for m in ('torch', 'timm', 'h5py', 'numpy') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _failing_app(exc: Exception) -> typer.Typer:
    demo = typer.Typer(cls=_PainterGroup)

    @demo.callback()
    def root() -> None:
        pass

    @demo.command()
    def boom() -> None:
        raise exc

    return demo


def test_painter_error_is_one_line_and_exit_1(cli_runner):
    demo = _failing_app(PainterError("data/x.png: not an image", hint="check the file"))
    result = cli_runner.invoke(demo, ["boom"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: data/x.png: not an image (hint: check the file)"]


def test_debug_shows_the_exception(cli_runner):
    demo = _failing_app(PainterError("broken"))
    _state["debug"] = True
    try:
        result = cli_runner.invoke(demo, ["boom"])
    finally:
        _state["debug"] = False
    assert isinstance(result.exception, PainterError)


def test_unexpected_error_is_one_line_with_hint(cli_runner):
    result = cli_runner.invoke(_failing_app(ValueError("bad value")), ["boom"])
    assert result.exit_code == 1
    assert "unexpected error: ValueError: bad value" in result.output
    assert "--debug" in result.output
    assert "Traceback" not in result.output


def test_subprocess_entry_points():
    out = subprocess.run(["painter", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"painter {__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "painter_cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and __version__ in out.stdout
    out = subprocess.run(["painter", "no-such-command"], capture_output=True, text=True)
    assert out.returncode == 2


def test_closed_stdout_stops_quietly(cli_runner):
    # `painter info --json | head -1`: the reader goes away mid-output; no error line.
    result = cli_runner.invoke(_failing_app(BrokenPipeError(32, "Broken pipe")), ["boom"])
    assert result.exit_code == 1
    assert result.output == ""


def test_help_shows_the_computed_defaults(cli_runner):
    result = cli_runner.invoke(app, ["prompt-tune", "--help"], terminal_width=200)
    assert result.exit_code == 0
    # rich markup would swallow a literal "[default: ...]" in the help text
    assert "(prompt-tune-TASK)" in result.output
    assert "(the synthetic suite's)" in result.output


def test_an_interrupt_prints_its_hint(cli_runner):
    exc = KeyboardInterrupt()
    exc.hint = "painter train --resume runs/x continues from its last checkpoint"
    result = cli_runner.invoke(_failing_app(exc), ["boom"])
    assert result.exit_code == 130
    assert result.output.strip() == f"error: interrupted (hint: {exc.hint})"


def test_help_shows_switches_as_flags(cli_runner):
    # typer's rich help printed "--debug <bool>", as if the switch took a value.
    result = cli_runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    assert "--debug" in result.output
    result = cli_runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "120"})
    assert "<bool>" not in result.output
    assert "<int>" in result.output  # options that take a value keep their type
