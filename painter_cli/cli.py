"""The ``painter`` entry point: a typer app that registers one thin module per subcommand.

Command modules import only typer at module level, so ``painter --help`` stays instant; the core
(torch, timm, h5py...) is imported inside each command's function.
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup, TyperOption

from painter_cli import __version__
from painter_cli.errors import PainterError

# (module in painter_cli.commands, attribute): a typer function (registered as a command) or a
# typer app (registered as a group). Only commands that work are listed.
COMMANDS: list[tuple[str, str]] = [
    ("weights", "weights"),
    ("encode", "encode"),
    ("info", "info"),
    ("predict", "predict"),
    ("eval", "eval_command"),
    ("train", "train"),
    ("prompt_select", "prompt_select"),
    ("prompt_tune", "prompt_tune"),
]


class _PainterGroup(TyperGroup):
    """Turns a ``PainterError`` (and any unexpected exception) into one line on stderr and exit
    code 1, unless ``--debug`` was given. Done here rather than in ``main`` so that the same
    behaviour holds under typer's ``CliRunner``."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PainterError as err:
            if _state["debug"]:
                raise
            _print_error(err.message, err.hint)
            ctx.exit(1)
        except KeyboardInterrupt as exc:
            # Long-running core code may set a ``hint`` on the interrupt (how to resume).
            _print_error("interrupted", getattr(exc, "hint", None))
            ctx.exit(130)
        except BrokenPipeError:
            # The reader of stdout went away (`painter ... | head`): stop quietly, as Unix tools
            # do. stdout is pointed at /dev/null so the flush at exit does not raise again.
            _drop_stdout()
            ctx.exit(1)
        except Exception as exc:
            # click's own exits and usage errors carry an exit code: let click handle them.
            if _state["debug"] or hasattr(exc, "exit_code") or isinstance(exc, typer.Abort):
                raise
            _print_error(
                f"unexpected error: {type(exc).__name__}: {exc}",
                "rerun with --debug for the traceback",
            )
            ctx.exit(1)


def _flags_show_no_type() -> None:
    """Rich help lists switches as plain flags (``--debug``), not ``--debug <bool>``.

    typer's rich formatter prints every option's value type, even for flags that take no value
    (its plain-text formatter already skips them); a flag's type column is left empty instead.
    """
    shows_type = TyperOption.display_type_rich
    if getattr(shows_type, "_painter_flags", False):
        return

    def display_type_rich(self, ctx):
        if self.is_flag or self.count:
            return None
        return shows_type(self, ctx)

    display_type_rich._painter_flags = True
    TyperOption.display_type_rich = display_type_rich


_flags_show_no_type()

app = typer.Typer(
    cls=_PainterGroup,
    name="painter",
    help="In-context visual learning: train, prompt and run one generalist model for many dense tasks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"painter {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and debug logs."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """painter: paint every task's output as an image, and let a prompt pair say which task."""
    _state["debug"] = debug
    from painter_cli.console import setup_logging

    setup_logging(debug)


def _register() -> None:
    for module_name, attr in COMMANDS:
        module = importlib.import_module(f"painter_cli.commands.{module_name}")
        obj = getattr(module, attr)
        name = module_name.replace("_", "-")
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=name)
        else:
            app.command(name=name)(obj)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``painter``)."""
    args = sys.argv[1:] if argv is None else argv
    app(args=args, prog_name="painter")


def _drop_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (e.g. captured by a test runner)
        pass


def _print_error(message: str, hint: str | None) -> None:
    line = f"error: {message}"
    if hint:
        line += f" (hint: {hint})"
    print(line, file=sys.stderr)
