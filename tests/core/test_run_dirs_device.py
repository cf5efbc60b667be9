"""The one run-folder rule (every stage numbers its output folders the same way) and the one device rule."""

from __future__ import annotations

import pytest
import torch

from detkit.errors import DetkitError
from detkit.utils.device import resolve_device
from detkit.utils.run_dirs import in_use, next_run_dir


def test_next_run_dir_numbers_folders_in_use(tmp_path):
    assert next_run_dir(tmp_path, "exp") == tmp_path / "exp"  # nothing there yet
    (tmp_path / "exp").mkdir()
    assert next_run_dir(tmp_path, "exp") == tmp_path / "exp"  # an empty folder is reused
    (tmp_path / "exp" / "metrics.json").write_text("{}")
    assert next_run_dir(tmp_path, "exp") == tmp_path / "exp2"
    (tmp_path / "exp2").write_text("a file")  # a file of that name is in use too
    (tmp_path / "exp3").mkdir()
    assert next_run_dir(tmp_path, "exp") == tmp_path / "exp3"
    assert in_use(tmp_path / "exp2") and not in_use(tmp_path / "exp3") and not in_use(tmp_path / "missing")


@pytest.mark.parametrize("bad", ["", "a/b", "a\\b", ".", ".."])
def test_next_run_dir_refuses_names_that_are_not_plain_folder_names(tmp_path, bad):
    with pytest.raises(DetkitError, match="plain folder name"):
        next_run_dir(tmp_path, bad)


def test_every_stage_follows_the_rule(tmp_path, monkeypatch):
    """train numbers its default name (a chosen one in use is refused: resume continues it); eval numbers both."""
    from detkit.stages.train import _new_run_dir

    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "x").write_text("")
    assert _new_run_dir(tmp_path, None) == tmp_path / "exp2"
    with pytest.raises(DetkitError, match="already exists") as e:
        _new_run_dir(tmp_path, "exp")
    assert "resume" in e.value.hint


def test_resolve_device_auto_and_names(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for auto in (None, "", "auto"):
        assert resolve_device(auto) == torch.device("cpu")
    with pytest.raises(DetkitError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda:1")  # each process its own GPU
    assert resolve_device("cuda", local_rank=2) == torch.device("cuda:2")
    assert resolve_device("cuda:0", local_rank=2) == torch.device("cuda:0")  # an explicit index wins
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", 3.5])
def test_resolve_device_unknown_name(bad):
    with pytest.raises(DetkitError, match="unknown device"):
        resolve_device(bad)
