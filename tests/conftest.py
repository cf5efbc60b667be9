"""Shared test helpers: run the CLI in-process and capture what a user would see."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("MPLBACKEND", "Agg")


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@pytest.fixture
def cli(capsys):
    """``cli("data", "validate", path)`` runs detkit in-process and returns exit code, stdout and stderr."""
    from detkit.cli.app import run

    def _run(*args: object) -> CliResult:
        capsys.readouterr()
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return _run


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    """A tiny synthetic shapes dataset, generated once per test session (read-only: copy it before changing it).

    96 px images, 5 classes (category ids 1..5); splits train 12, val 6, calib 6, test 6; the test split is also
    rendered in the six COCO-O-style domains under ``<root>/coco_o/<domain>/{val2017, annotations}``.
    Returns the dataset root (a folder holding ``dataset.yaml``).
    """
    from detkit.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("synth") / "shapes"
    return generate_synthetic(root, train=12, val=6, calib=6, test=6, imgsz=96, domains=True, seed=0)


@pytest.fixture(scope="session")
def fiftyone_db(tmp_path_factory):
    """One FiftyOne database for the whole test session, in a folder of its own, stopped (and checked) at the end.

    FiftyOne keeps one database connection per process and reads its config once, so every FiftyOne test shares
    this fixture instead of starting and stopping databases of its own.
    """
    import time

    pytest.importorskip("fiftyone")
    from detkit_testing import mongod_processes

    db_dir = tmp_path_factory.mktemp("fiftyone_db")
    env = {
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DATABASE_VALIDATION": "false",
        "FIFTYONE_DATABASE_DIR": str(db_dir),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import fiftyone as fo

    fo.config.database_dir = str(db_dir)  # in case FiftyOne was imported before this fixture ran
    fo.config.database_validation = False
    try:
        yield db_dir
    finally:
        from detkit.data.formats.fiftyone_io import shutdown_database

        shutdown_database()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        deadline = time.monotonic() + 15
        while mongod_processes(db_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not mongod_processes(db_dir), "mongod is still running after the FiftyOne tests"
