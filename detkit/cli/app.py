"""The ``detkit`` command: one typer group per stage. Commands parse and render; the library does the work."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer

from detkit import __version__
from detkit.cli.ui import print_error
from detkit.errors import DetkitError

app = typer.Typer(
    name="detkit",
    help="From a folder of labelled images to a calibrated, robustness-checked, deployable RT-DETR detector.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"detkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.", envvar="DETKIT_DEBUG"),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    del debug, version  # --debug is read by run() before typer parses, --version by its callback


def _register() -> None:
    """Attach the stage commands, in the order of the pipeline."""
    from detkit.cli import bench, calibrate, data, explain, export, predict, quickstart, recipes, train, view
    from detkit.cli import eval as eval_cli

    app.add_typer(data.app, name="data", help="Convert, validate, inspect, split, augment and synthesise datasets.")
    app.add_typer(recipes.app, name="recipes", help="List and inspect training recipes.")
    train.register(app)
    app.command("eval")(eval_cli.eval_command)
    app.command("calibrate")(calibrate.calibrate_command)
    app.add_typer(export.app, name="export", help="Export a model: ONNX with built-in parity verification.")
    app.command("predict")(predict.predict_command)
    app.command("bench")(bench.bench_command)
    app.command("explain")(explain.explain_command)
    app.command("view")(view.view_command)
    app.command("quickstart")(quickstart.quickstart)


_register()


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code (never raises for user errors). Used by ``main`` and the tests."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("DETKIT_DEBUG", "") not in ("", "0", "false")
    try:
        app(args=args, prog_name="detkit", standalone_mode=True)
    except SystemExit as e:
        code = e.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    except DetkitError as e:
        if debug:
            raise
        from detkit.cli.flags import with_flags

        print_error(e.message, with_flags(e.hint, typer.main.get_command(app), args, e.params))
        return 1
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: never a traceback without --debug
        if debug:
            raise
        print_error(
            f"internal error: {type(e).__name__}: {e}", hint="re-run with --debug for the traceback and report it"
        )
        return 1
    return 0


def main() -> None:
    sys.exit(run())
