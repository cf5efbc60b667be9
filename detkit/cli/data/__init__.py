"""``detkit data ...``: one module per sub-command, all registered on this group."""

import typer

app = typer.Typer(no_args_is_help=True, help="Convert, validate, inspect, split, augment and synthesise datasets.")

# Sub-command modules register themselves on ``app`` when imported.
# (each line below is owned by the module it imports)
from detkit.cli.data import augment as _augment  # noqa: E402,F401
from detkit.cli.data import convert as _convert  # noqa: E402,F401  (D1)
from detkit.cli.data import split as _split  # noqa: E402,F401
from detkit.cli.data import stats as _stats  # noqa: E402,F401
from detkit.cli.data import synth as _synth  # noqa: E402,F401
from detkit.cli.data import validate as _validate  # noqa: E402,F401  (D1)
