"""Every table the CLI prints fits 80 columns (a pipe, a CI log) and never breaks a number across lines.

Each command runs with COLUMNS=80; every table it prints is also rendered 300 columns wide, and every number of
the 80-column rendering must be a whole number of the wide one (a number broken across lines leaves fragments
such as ``8023.`` and ``5078`` that the wide rendering does not contain)."""

from __future__ import annotations

import io
import json
import re
import shutil

import pytest
from rich.console import Console

NUMBER = re.compile(r"\d[\d,.]*(?:e[-+]?\d+)?")
BOX = set("┏┃┡│└┌├┓┩┤┘┐")


@pytest.fixture
def tables(monkeypatch):
    """Records (title, 80-column rendering, 300-column rendering) of every table printed while COLUMNS=80."""
    from detkit.cli import ui as ui_mod

    monkeypatch.setenv("COLUMNS", "80")
    seen = []
    original = ui_mod.UI.table

    def render(width, *args, **kwargs):
        probe = ui_mod.UI()
        probe.console = Console(file=io.StringIO(), width=width, highlight=False)
        original(probe, *args, **kwargs)
        return probe.console.file.getvalue()

    def spy(self, title, *args, **kwargs):
        assert self.console.width == 80  # rich took the width from COLUMNS
        seen.append((title, render(80, title, *args, **kwargs), render(300, title, *args, **kwargs)))
        original(self, title, *args, **kwargs)

    monkeypatch.setattr(ui_mod.UI, "table", spy)
    return seen


def assert_readable(result, seen, expected_tables):
    assert result.code == 0, result.text
    long = [line for line in result.text.splitlines() if len(line) > 80]
    assert not long, "\n".join(long)
    assert len(seen) >= expected_tables, [t for t, _, _ in seen]
    for title, narrow, wide in seen:
        assert max(len(line) for line in narrow.splitlines()) <= 80, narrow
        cropped = [line for line in narrow.splitlines() if line[:1] in BOX and line.rstrip()[-1:] not in BOX]
        assert not cropped, f"'{title}' is wider than 80 columns and was cut off:\n{narrow}"
        fragments = set(NUMBER.findall(narrow)) - set(NUMBER.findall(wide))
        assert not fragments, f"numbers broken across lines in '{title}': {sorted(fragments)}\n{narrow}"


def _bench_result(threads, precisions):
    from detkit.stages.bench import BenchResult, BenchRow

    rows = []
    for i, (backend, batch) in enumerate([("torch", 1), ("onnxruntime", 1), ("torch", 4), ("onnxruntime", 4)]):
        t = threads[i % len(threads)]
        rows.append(
            BenchRow(
                backend,
                batch,
                t,
                precisions[i % len(precisions)],
                0.2920123 * batch,
                8023.5078 / batch,
                0.1182,
                8023.9538 / batch,
                10820.12,
                9001.3,
                0.124622 * batch * 47.1,
            )
        )
    return BenchResult(
        "tiny.pt", (640, 640), 10, 3, {"cpu": "x", "logical_cores": 2, "torch_device": "cpu"}, {"detkit": "0"}, rows
    )


@pytest.mark.parametrize(("threads", "precisions"), [((2,), ("fp32",)), ((1, 2, 4, 8), ("fp32", "fp16"))])
def test_bench_table(cli, tables, monkeypatch, tmp_path, threads, precisions):
    import detkit.stages.bench

    monkeypatch.setattr(detkit.stages.bench, "benchmark", lambda *a, **k: _bench_result(threads, precisions))
    r = cli("bench", "tiny.pt", "--out", tmp_path / "b.json")
    assert_readable(r, tables, 1)
    title, narrow, _ = tables[0]
    assert "8024" in narrow and "8023.5078" not in narrow  # the digits that matter
    if len(threads) == 1:  # shared settings go into the title, and then every column fits
        assert "fp32, 2 threads" in title and "threads" not in narrow.split("\n", 2)[-1] and "0.292" in narrow
    else:  # threads and precision vary: the pre/post columns make room (JSON keeps them)
        assert "threads" in narrow and "not shown at this width: pre, post" in narrow


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from export.tiny import tiny_checkpoint

    from detkit.data.synth import synth_class_map

    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", synth_class_map(), imgsz=96)


def test_eval_predict_export_tables(cli, tables, tiny_ckpt, synth_dataset, tmp_path):
    assert_readable(
        cli("eval", tiny_ckpt, "--data", synth_dataset, "--split", "test", "--out", tmp_path / "ev"), tables, 2
    )
    tables.clear()
    images = (
        sorted((synth_dataset / "images").rglob("*.jpg"))[:2] or sorted((synth_dataset / "images").rglob("*.png"))[:2]
    )
    assert_readable(cli("predict", tiny_ckpt, *images, "--out", tmp_path / "pred"), tables, 1)
    tables.clear()
    assert_readable(cli("export", "onnx", tiny_ckpt, "--out", tmp_path / "m.onnx"), tables, 1)


def test_data_tables(cli, tables, synth_dataset, tmp_path):
    assert_readable(cli("data", "stats", synth_dataset), tables, 4)
    tables.clear()
    data = tmp_path / "data"
    shutil.copytree(synth_dataset, data)
    ann = next((data / "annotations").glob("*.json"))
    coco = json.loads(ann.read_text())
    coco["annotations"][0]["bbox"] = [5.0, 5.0, 0.0, 12.0]  # a degenerate box: a finding
    coco["annotations"][1]["bbox"] = [90.0, 90.0, 400.0, 12.0]  # outside the image
    ann.write_text(json.dumps(coco))
    r = cli("data", "validate", data)
    r.code = 0  # errors exit 1 by design
    assert_readable(r, tables, 3)


def test_recipes_tables(cli, tables):
    assert_readable(cli("recipes", "list"), tables, 1)
    tables.clear()
    assert_readable(cli("recipes", "show", "rtdetr-r18"), tables, 1)


def test_calibrate_tables(cli, tables, tmp_path):
    from calibration.calibration_cases import overconfident_split, write_dataset

    from detkit.evaluation.predictions import write_predictions

    (g_cal, d_cal), (g_test, d_test) = overconfident_split(1, 120), overconfident_split(2, 120)
    data = write_dataset(tmp_path / "data", {"calib": g_cal, "test": g_test})
    write_predictions(tmp_path / "calib.json", d_cal)
    write_predictions(tmp_path / "test.json", d_test)
    r = cli(
        "calibrate",
        "--data",
        data,
        "--predictions",
        tmp_path / "calib.json",
        "--eval-predictions",
        tmp_path / "test.json",
        "--out",
        tmp_path / "cal" / "calibrator.json",
    )
    assert_readable(r, tables, 2)


def test_quickstart_summary_table(tables, capsys):
    from detkit.cli.quickstart import summary_rows
    from detkit.cli.ui import UI
    from detkit.stages.quickstart import QuickstartResult

    result = QuickstartResult(
        out=None,
        summary={
            "val_AP50_best": 0.6123456,
            "test_AP": 0.3456789,
            "test_AP50": 0.5912345,
            "coco_o_mAP": 21.2345,
            "coco_o_ER": -3.456,
            "coco_c_mPC": 18.765,
            "coco_c_rPC": 0.54321,
            "D-ECE_before": 0.1234567,
            "D-ECE_after": 0.0456789,
            "LaECE0_before": 0.0987654,
            "LaECE0_after": 0.0312345,
            "export_max_abs_diff_scores": 8.5712345e-08,
            "export_max_abs_diff_boxes_px": 9.1552734e-05,
            "onnx_latency_ms_b1": 168.27551,
        },
        timings={"total": 851.2},
    )
    UI().table("detkit quickstart", ["", "value"], summary_rows(result))
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    _, narrow, wide = tables[0]
    assert not set(NUMBER.findall(narrow)) - set(NUMBER.findall(wide)), narrow


def test_a_table_too_wide_for_the_console_drops_optional_columns_then_stacks(monkeypatch, capsys):
    from detkit.cli.ui import UI

    monkeypatch.setenv("COLUMNS", "80")
    columns = [f"column {i}" for i in range(12)]
    rows = [[1234.5678 * (i + 1) + j for i in range(12)] for j in range(2)]
    UI().table("wide", columns, rows, optional=("column 11", "column 10"))
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "1235" in out and "1234.5678" not in out  # rounded, and stacked: one 'column  value' line per cell
    assert sum("column 3 " in line for line in out.splitlines()) == 2
    UI().table("fits after dropping", columns[:9], [r[:9] for r in rows], optional=("column 8", "column 7"))
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80 and "not shown at this width: column 8" in out
