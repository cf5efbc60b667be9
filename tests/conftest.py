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
