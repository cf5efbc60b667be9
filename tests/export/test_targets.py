"""The export target table: which targets exist, what they write, and a clear error for an unknown one."""

from __future__ import annotations

import pytest


def test_the_target_table_lists_onnx_and_int8():
    from detkit.export import TARGETS, export_onnx
    from detkit.export.targets import export_target
    from detkit.export.targets.int8 import export_int8

    assert {"onnx", "int8"} <= set(TARGETS)
    assert export_target("onnx").load() is export_onnx and export_target("int8").load() is export_int8
    for row in TARGETS.values():
        assert row.name in TARGETS and row.default_out.endswith(row.suffix)


@pytest.mark.parametrize("name", ["tensorrt-nope", "ONNX", None])
def test_an_unknown_target_is_a_one_line_error_listing_the_known_ones(name, tmp_path):
    from detkit.export import ExportError, export_model

    with pytest.raises(ExportError) as err:
        export_model("never-loaded.pt", target=name, out=tmp_path / "m.onnx")
    assert f"unknown export target {name!r}" in err.value.message and "\n" not in err.value.message
    assert "onnx" in err.value.hint and "int8" in err.value.hint and err.value.params == ("target",)
    assert list(tmp_path.iterdir()) == []


def test_export_model_runs_the_named_target_with_its_default_name(ckpt, tmp_path, monkeypatch):
    from detkit.export import export_model

    monkeypatch.chdir(tmp_path)
    result = export_model(ckpt, "onnx", verify=False)
    assert result.model_path.name == "model.onnx" and (tmp_path / "model.onnx").is_file()
    assert (tmp_path / "model.json").is_file() and result.metadata["precision"] == "fp32"
