"""The whole detkit chain on the embedded synthetic data, in one call (``detkit quickstart``).

synth → validate → train (short CPU schedule) → calibrate → eval with robustness and calibration (the
calibrator applied under every shift) → export with the calibrator → eval of the exported model → predict on a
few test images → bench, with every artifact under one folder
and a summary of the headline numbers. Each step is the same library function the stage's own command
calls, so this is also the reference for using detkit from Python (see ``examples/``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detkit.errors import DetkitError
from detkit.utils.atomic import atomic_write_json

QUICK_RECIPE = "recipe:rtdetr-r18-cpu"
# A subset of COCO-C that runs in seconds on a CPU; `detkit eval --robustness` runs all 15 by default.
QUICK_CORRUPTIONS = ("gaussian_noise", "motion_blur", "fog", "jpeg_compression")
QUICK_SEVERITIES = (3,)
STEPS = 9


@dataclass
class QuickstartResult:
    out: Path
    paths: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "paths": {k: str(v) for k, v in self.paths.items()},
            "summary": self.summary,
            "timings_s": {k: round(v, 1) for k, v in self.timings.items()},
        }


def _timed(result: QuickstartResult, step: str, log: Callable[[str], None], fn: Callable[[], Any]) -> Any:
    log(f"[{len(result.timings) + 1}/{STEPS}] {step}")
    t0 = time.perf_counter()
    value = fn()
    result.timings[step] = time.perf_counter() - t0
    return value


def run_quickstart(
    out: str | Path = "runs/quickstart",
    train_minutes: float = 11.0,
    train_images: int = 1500,
    eval_images: int = 200,
    imgsz: int = 256,
    seed: int = 0,
    device: str | None = None,
    overwrite: bool = False,
    extra_overrides: Sequence[str] = (),
    log: Callable[[str], None] = print,
    recipe: str = QUICK_RECIPE,
) -> QuickstartResult:
    """Run the full chain into ``out`` and return the artifact paths and headline numbers.

    ``train_minutes`` bounds the training wall time (the trainer stops before an epoch that would end later);
    ``extra_overrides`` are ``key=value`` recipe overrides for the training step; ``recipe`` is the recipe trained
    (default the CPU profile ``rtdetr-r18-cpu``; any family's recipe works).
    """
    from detkit.config.recipe import resolve_recipe
    from detkit.data.synth import generate_synthetic
    from detkit.data.validate import validate_dataset
    from detkit.export import export_onnx
    from detkit.stages.bench import benchmark
    from detkit.stages.calibrate import calibrate, write_outputs
    from detkit.stages.evaluate import evaluate
    from detkit.stages.predict import predict
    from detkit.stages.train import check_training_sizes, train

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DetkitError(
            "output folder exists and is not empty",
            hint="choose another folder or set overwrite",
            path=out,
            params="overwrite",
        )
    if train_minutes <= 0 or train_images < 8 or eval_images < 4:
        raise DetkitError(
            "train_minutes must be > 0, train_images >= 8 and eval_images >= 4",
            params=("train_minutes", "train_images", "eval_images"),
        )
    train_overrides = [f"train.time_limit_minutes={train_minutes}", f"train.imgsz={imgsz}", *extra_overrides]
    recipe = recipe if recipe.startswith("recipe:") or recipe.endswith((".yaml", ".yml")) else f"recipe:{recipe}"
    check_training_sizes(resolve_recipe(recipe, overrides=train_overrides))  # fail before any work is done
    out.mkdir(parents=True, exist_ok=True)
    result = QuickstartResult(out=out)
    t_start = time.perf_counter()

    data = _timed(
        result,
        "synthesise data",
        log,
        lambda: generate_synthetic(
            out / "data",
            train=train_images,
            val=eval_images,
            calib=eval_images,
            test=eval_images,
            imgsz=imgsz,
            domains=True,
            seed=seed,
            overwrite=True,
            workers=max(1, os.cpu_count() or 1),
        ),
    )
    result.paths["dataset"] = data / "dataset.yaml"

    report = _timed(result, "validate data", log, lambda: validate_dataset(data))
    if report.errors:
        raise DetkitError(f"the generated dataset has {len(report.errors)} validation errors", path=data)

    trained = _timed(
        result,
        f"train {recipe} ({train_minutes:g} min budget)",
        log,
        lambda: train(recipe, data, out=out / "train", name="run", device=device, seed=seed, overrides=train_overrides),
    )
    run_dir = trained.run_dir
    result.paths["run"] = run_dir

    calibrator_path = out / "calibrator.json"
    calibrated = _timed(
        result,
        "calibrate (isotonic, fitted on calib, evaluated on test)",
        log,
        lambda: calibrate(run_dir, data, split="calib", method="isotonic", eval_split="test", device=device),
    )
    written = write_outputs(calibrated, calibrator_path)
    result.paths["calibrator"] = calibrator_path
    result.paths.update({f"calibration_{k}": v for k, v in written.items() if k != "calibrator"})

    evaluated = _timed(
        result,
        "evaluate (test split, COCO-O domains, COCO-C subset, raw vs calibrated)",
        log,
        lambda: evaluate(
            run_dir,
            data,
            split="test",
            robustness=True,
            coco_o=data / "coco_o",
            corruptions=list(QUICK_CORRUPTIONS),
            severities=list(QUICK_SEVERITIES),
            calibration=True,
            calibrator=calibrator_path,
            out=out / "eval",
            name="test",
            device=device,
            cache_dir=out / "cache",
        ),
    )
    result.paths["eval"] = evaluated.dir

    test_images = sorted((data / "images" / "test").glob("*.jpg"))[:4]
    exported = _timed(
        result,
        "export ONNX with the calibrator (verified against PyTorch)",
        log,
        lambda: export_onnx(
            run_dir, out / "export" / "model.onnx", calibrator=calibrator_path, verify_images=test_images
        ),
    )
    result.paths["onnx"] = exported.model_path

    onnx_eval = _timed(
        result,
        "evaluate the exported model (calibrator inside) on the test split",
        log,
        lambda: evaluate(exported.model_path, data, split="test", out=out / "eval", name="onnx"),
    )
    result.paths["eval_onnx"] = onnx_eval.dir

    predicted = _timed(
        result,
        "predict on test images (onnxruntime)",
        log,
        lambda: predict(exported.model_path, test_images, out=out / "predict", calibrator=None, overwrite=True),
    )
    result.paths["predictions"] = predicted.predictions_path

    benched = _timed(
        result,
        "benchmark ONNX latency",
        log,
        lambda: benchmark(exported.model_path, backends=("onnxruntime",), batch_sizes=(1,), iters=10),
    )
    result.paths["bench"] = atomic_write_json(out / "bench.json", benched.to_dict())

    result.timings["total"] = time.perf_counter() - t_start
    result.summary = _summary(trained, evaluated, calibrated, exported, benched)
    result.summary["onnx_test_AP"] = onnx_eval.metrics.get("AP")
    return result


def _summary(trained: Any, evaluated: Any, calibrated: Any, exported: Any, benched: Any) -> dict[str, Any]:
    from detkit.evaluation.calibration_metrics import summary_values

    rob = evaluated.robustness or {}
    coco_o, coco_c = rob.get("coco_o") or {}, rob.get("coco_c") or {}
    before = summary_values(calibrated.before) if calibrated.before else {}
    after = summary_values(calibrated.after) if calibrated.after else {}
    parity = exported.parity
    row = benched.rows[0] if benched.rows else None
    return {
        "val_AP50_best": _best(trained.history, "AP50"),
        "val_AP_best": trained.best_ap,
        "train_epochs": trained.epochs_done,
        "test_AP": evaluated.metrics.get("AP"),
        "test_AP50": evaluated.metrics.get("AP50"),
        "coco_o_mAP": coco_o.get("mAP_O"),
        "coco_o_ER": coco_o.get("effective_robustness"),
        "coco_c_mPC": coco_c.get("mPC"),
        "coco_c_rPC": coco_c.get("rPC"),
        "D-ECE_before": before.get("d_ece"),
        "D-ECE_after": after.get("d_ece"),
        "LaECE0_before": before.get("la_ece_0"),
        "LaECE0_after": after.get("la_ece_0"),
        "AP_raw": calibrated.ap_before,
        "AP_calibrated": calibrated.ap_after,
        "export_max_abs_diff_scores": parity.max_abs_diff_scores if parity else None,
        "export_max_abs_diff_boxes_px": parity.max_abs_diff_boxes_px if parity else None,
        "export_parity_passed": parity.passed if parity else None,
        "onnx_latency_ms_b1": row.total_ms if row else None,
    }


def _best(history: list[dict[str, Any]], key: str) -> float | None:
    values = [r.get(key) for r in history if r.get(key) is not None]
    return max(values) if values else None
