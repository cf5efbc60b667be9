"""What a run folder remembers about its dataset, so that ``train(resume=RUN)`` needs nothing else.

The run's ``summary.json`` carries ``"dataset": {"path", "absolute", "given"}``: the dataset file relative to
the run folder, its absolute path and the path as it was passed. On resume the first of these that exists
wins, in that order: relative to the run folder first (a project folder moved or copied as a whole keeps
working), then the absolute path (the run folder moved alone), then the given path relative to the current
folder. Everything else a resumed run needs is already in the folder: the resolved recipe with every override
(``recipe.yaml``, including ``train.device``) and the weights and training state (``checkpoints/last.pt``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from detkit.data.dataset import DatasetSpec, load_dataset
from detkit.errors import DetkitError
from detkit.utils.files import read_json

SUMMARY_FILE = "summary.json"
DATA_HINT = "pass the dataset's current location as data"


def dataset_record(spec: DatasetSpec, given: str | Path, run_dir: Path) -> dict[str, str]:
    """The ``"dataset"`` entry of a run's summary for the dataset ``spec`` (loaded from ``given``)."""
    absolute = Path(spec.path).resolve()
    return {
        "path": Path(os.path.relpath(absolute, Path(run_dir).resolve())).as_posix(),
        "absolute": str(absolute),
        "given": str(given),
    }


def _candidates(run_dir: Path, record: dict[str, Any]) -> list[Path]:
    found: list[Path] = []
    for p in (
        run_dir / str(record["path"]) if record.get("path") else None,
        Path(str(record["absolute"])) if record.get("absolute") else None,
        Path(str(record["given"])) if record.get("given") else None,
    ):
        if p is not None and all(os.path.abspath(p) != os.path.abspath(q) for q in found):
            found.append(p)
    return found


def recorded_dataset(run_dir: Path) -> tuple[DatasetSpec, str]:
    """The dataset a run was trained on, found through its summary's record (see the module docstring), and
    the path as it was first given (kept in the record the resumed run writes)."""
    summary_path = Path(run_dir) / SUMMARY_FILE
    if not summary_path.is_file():
        raise DetkitError(f"run {run_dir} has no {SUMMARY_FILE} recording its dataset", hint=DATA_HINT, params="data")
    summary = read_json(summary_path, what="run summary")
    record = summary.get("dataset") if isinstance(summary, dict) else None
    if not isinstance(record, dict) or not _candidates(Path(run_dir), record):
        raise DetkitError(
            f"run {run_dir} does not record its dataset (written by an older detkit)", hint=DATA_HINT, params="data"
        )
    candidates = _candidates(Path(run_dir), record)
    for p in candidates:
        if p.exists():
            return load_dataset(p), str(record.get("given") or p)
    shown = list(dict.fromkeys(os.path.normpath(p) for p in candidates[:2]))  # relative to the run, absolute
    looked = " or ".join(shown)
    raise DetkitError(
        f"cannot resume run {run_dir}: its dataset is no longer at {looked}", hint=DATA_HINT, params="data"
    )
