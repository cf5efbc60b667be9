"""The optional integrations (the extras in ``pyproject.toml``): used when installed, never needed.

The main path (data → train → eval → calibrate → export → predict → bench) imports them only through
:func:`optional_import`, which returns ``None`` when the package is missing (or fails to import) and then
tells the user once per process, in one info line, what they do without and how to install it. Stages that
exist only for an extra (``detkit view``, ``fiftyone:<TYPE>`` conversions) refuse with a DetkitError instead.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from detkit.utils.progress import note

_told: set[str] = set()  # packages whose absence was already reported in this process


def optional_import(module: str, package: str, without: str, install: str | None = None) -> ModuleType | None:
    """``module`` imported, or ``None`` after one line "``package`` not installed: ``without`` (``install``)".

    ``without`` says what the user misses (e.g. "no TensorBoard logs"); ``install`` defaults to
    ``pip install <package>``.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = "not installed"
    except Exception as e:  # noqa: BLE001 - a broken optional install must not stop the main path
        reason = f"unusable ({type(e).__name__}: {e})"
    if package not in _told:
        _told.add(package)
        note(f"{package} {reason}: {without} ({install or 'pip install ' + package})")
    return None
