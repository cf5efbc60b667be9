"""Checkpoint round trip and every bad file a user can hand us (never executing anything)."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.models.checkpoint import load_checkpoint, read_weights, save_checkpoint, save_weights

CLASSES = ClassMap.from_names(["cat", "dog"])


def test_round_trip(tiny_model, tmp_path):
    sd = tiny_model.state_dict()
    path = save_checkpoint(
        tmp_path / "ck" / "best.pt",
        model=sd,
        class_map=CLASSES,
        recipe={"model": {"depth": 18}},
        ema=sd,
        epoch=3,
        step=120,
    )
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temporary left behind
    ck = load_checkpoint(path)
    assert ck.class_map == CLASSES and ck.recipe == {"model": {"depth": 18}}
    assert ck.training == {"epoch": 3, "step": 120}
    assert all(torch.equal(ck.weights[k], v) for k, v in sd.items())
    with pytest.raises(ValueError, match="unknown checkpoint fields"):
        save_checkpoint(tmp_path / "x.pt", model=sd, class_map=CLASSES, recipe={}, epochs=3)


def test_safetensors_weights(tiny_model, tmp_path):
    path = save_weights(tmp_path / "w.safetensors", tiny_model.state_dict())
    sd = read_weights(path)[0]
    assert set(sd) == set(tiny_model.state_dict())
    (tmp_path / "bad.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(DetkitError, match="cannot read safetensors"):
        read_weights(tmp_path / "bad.safetensors")


def test_truncated_file(tiny_model, tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", model=tiny_model.state_dict(), class_map=CLASSES, recipe={})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DetkitError, match="truncated or corrupt") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(DetkitError, match="not a PyTorch file"):
        load_checkpoint(text)
    plain = tmp_path / "sd.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    with pytest.raises(DetkitError, match="not a detkit checkpoint") as e:
        load_checkpoint(plain)
    assert "--weights" in e.value.hint
    with pytest.raises(DetkitError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_pickle_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": "detkit-checkpoint", "model": _Payload(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    for reader in (load_checkpoint, read_weights):
        with pytest.raises(DetkitError, match="refused, nothing was executed"):
            reader(path)
    assert not marker.exists()
