"""The ``painter`` entry point: a typer app that registers one thin module per subcommand.

Command modules import only typer at module level, so ``painter --help`` stays instant; the core
(torch, timm, h5py...) is imported inside each command's function.
"""

from __future__ import annotations

import importlib
import sys

import typer

from painter_cli import __version__
from painter_cli.errors import PainterError

# (module in painter_cli.commands, attribute): a typer function (registered as a command) or a
# typer app (registered as a group). Only commands that work are listed.
COMMANDS: list[tuple[str, str]] = []

app = typer.Typer(
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
    """Run the CLI; a ``PainterError`` becomes one line on stderr and exit code 1."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, prog_name="painter", standalone_mode=False)
    except PainterError as err:
        if debug:
            raise
        _print_error(err.message, err.hint)
        sys.exit(1)
    except KeyboardInterrupt:
        _print_error("interrupted", None)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _print_error("aborted", None)
        sys.exit(1)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if debug:
            raise
        _print_error(f"unexpected error: {type(exc).__name__}: {exc}", "rerun with --debug for the traceback")
        sys.exit(1)


def _print_error(message: str, hint: str | None) -> None:
    line = f"error: {message}"
    if hint:
        line += f" (hint: {hint})"
    print(line, file=sys.stderr)
