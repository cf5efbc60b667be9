"""The whole detkit chain from Python: every stage is a library function with the CLI's arguments.

python examples/quickstart_api.py [OUT] [TRAIN_MINUTES]
"""

from __future__ import annotations

import sys
from pathlib import Path

from detkit import load_model
from detkit.data.synth import generate_synthetic
from detkit.data.validate import validate_dataset
from detkit.export import export_onnx
from detkit.stages.bench import benchmark
from detkit.stages.calibrate import calibrate, write_outputs
from detkit.stages.evaluate import evaluate
from detkit.stages.predict import predict
from detkit.stages.train import train


def main(out: Path, minutes: float) -> None:
    data = generate_synthetic(out / "data", domains=True, workers=2)
    report = validate_dataset(data)
    assert not report.errors, report.errors

    run = train(
        "recipe:rtdetr-r18-cpu", data, out=out / "train", name="run", overrides=[f"train.time_limit_minutes={minutes}"]
    )
    print(f"trained {run.epochs_done} epochs, best val AP {run.best_ap}")

    ev = evaluate(
        run.run_dir,
        data,
        split="test",
        robustness=True,
        coco_o=data / "coco_o",
        corruptions=["gaussian_noise", "fog"],
        severities=[3],
        calibration=True,
        out=out / "eval",
        name="test",
    )
    print("test AP", ev.metrics["AP"], "robustness", ev.summary().get("robustness"))

    cal = calibrate(run.run_dir, data, split="calib", method="isotonic", eval_split="test")
    write_outputs(cal, out / "calibrator.json")
    for metric, before, after in cal.rows():
        print(f"{metric:45s} {before} -> {after}")

    exported = export_onnx(run.run_dir, out / "export" / "model.onnx", calibrator=out / "calibrator.json")
    print("ONNX parity:", exported.parity.max_abs_diff_scores, "max |Δ| score")

    # The same detector from Python: PyTorch weights or the exported graph behind one interface.
    detector = load_model(exported.model_path)
    images = sorted((data / "images" / "test").glob("*.jpg"))[:4]
    for path, dets in zip(images, detector.predict(images, conf=0.3)):
        print(path.name, [(detector.class_map.names[c], round(float(s), 2)) for c, s in zip(dets.labels, dets.scores)])

    predict(exported.model_path, images, out=out / "predict", overwrite=True)
    print(benchmark(exported.model_path, backends=("onnxruntime",), batch_sizes=(1,)).rows[0])


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/example-api"),
        float(sys.argv[2]) if len(sys.argv) > 2 else 9.0,
    )
