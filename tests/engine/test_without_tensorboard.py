"""A plain install has no tensorboard: training still finishes, says so in one info line, writes its checkpoints."""

from __future__ import annotations

import json
import sys

import pytest


@pytest.fixture
def no_tensorboard(monkeypatch):
    """tensorboard made unimportable (as after a plain install), and no info line given yet in this process."""
    from detkit.utils import optional

    for name in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(optional, "_told", set())


def test_training_without_tensorboard_finishes_with_one_info_line(
    cli, no_tensorboard, tiny_dataset, tiny_overrides, tmp_path
):
    r = cli("train", "recipe:rtdetr-r18", "--data", tiny_dataset, "--epochs", "2", "--out", tmp_path, *tiny_overrides)
    assert r.code == 0, r.text
    run = tmp_path / "exp"
    for f in ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.csv", "summary.json"):
        assert (run / f).is_file(), f
    assert json.loads((run / "summary.json").read_text())["epochs_done"] == 2
    assert r.text.count("tensorboard not installed: no TensorBoard logs (pip install tensorboard)") == 1, r.text
    assert "Traceback" not in r.text and not (run / "tensorboard").exists()


def test_training_with_tensorboard_writes_its_logs(cli, tiny_dataset, tiny_overrides, tmp_path):
    pytest.importorskip("tensorboard")
    r = cli("train", "recipe:rtdetr-r18", "--data", tiny_dataset, "--epochs", "1", "--out", tmp_path, *tiny_overrides)
    assert r.code == 0, r.text
    assert list((tmp_path / "exp" / "tensorboard").glob("events.out.tfevents.*"))
    assert "not installed" not in r.text
