import pytest

from detkit.errors import DetkitError
from detkit.utils.atomic import atomic_dir, atomic_path, atomic_write_json


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".onnx" and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_atomic_write_json_refuses_nan_and_leaves_nothing(tmp_path):
    out = tmp_path / "m.json"
    with pytest.raises(ValueError):
        atomic_write_json(out, {"ap": float("nan")})
    assert list(tmp_path.iterdir()) == []
    atomic_write_json(out, {"ap": 0.5})
    assert out.read_text().strip().endswith("}")


def test_atomic_dir_appears_complete_or_not_at_all(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("x")
            raise RuntimeError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("x")
    assert (out / "a.txt").read_text() == "x"


def test_atomic_dir_refuses_non_empty_output_unless_overwrite(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("k")
    with pytest.raises(DetkitError, match="not empty"):
        with atomic_dir(out):
            pass
    assert (out / "keep.txt").exists()
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("n")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
