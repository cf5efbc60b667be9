"""The export job every target shares: what is exported, what it is checked against, and how it is written.

An :class:`ExportJob` holds the PyTorch detector being exported, the deploy graph built from it (the model in
deploy form, the post-processor and the optional calibrator; ``detkit.export.graph``), the PyTorch reference the
written file must agree with (tie-robust parity, ``detkit.export.verify``), the ``model.json`` metadata common to
every target, and the atomic write (temporary name, renamed into place only when complete; the sidecar beside it).
A target (``detkit.export.targets``) adds only what its file format needs: tracing, conversion, its own checks.

Every message names the job's ``out`` (the user's file), even when a target writes an intermediate file elsewhere.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from detkit.export.errors import ExportError
from detkit.export.graph import DeployGraph, decoder_layers_of, deploy_copy, set_decoder_layers
from detkit.export.verify import ParityReport, parity_error, verify_parity
from detkit.inference.onnx_detector import sidecar_path
from detkit.utils.atomic import atomic_path, atomic_write_json


def check_imgsz(imgsz: Sequence[int] | None) -> None:
    """Refuse a bad input size before any work is done."""
    if imgsz is not None and (len(imgsz) != 2 or any(int(s) <= 0 or int(s) % 32 for s in imgsz)):
        raise ExportError(
            f"image size {tuple(imgsz)} must be two positive multiples of 32 (height, width)",
            hint="the backbone downsamples by 32, e.g. imgsz=(640, 640) or (480, 640)",
            params="imgsz",
        )


def check_decoder_layers(decoder_layers: int | None) -> None:
    if decoder_layers is not None and int(decoder_layers) < 1:
        raise ExportError(f"decoder_layers must be >= 1, got {decoder_layers}", params="decoder_layers")


@dataclass
class ExportJob:
    """One model to export: ``open_job`` builds it; targets call :meth:`graph`, :meth:`metadata`,
    :meth:`parity` / :meth:`require` and :meth:`write`."""

    source: Any  # the user's model source, recorded in the metadata
    out: Path  # the user's output file: errors name it
    detector: Any  # the loaded PyTorch detector (``TorchDetector``)
    imgsz: tuple[int, int]
    calibrator: Any = None
    drop_below_threshold: bool = False
    decoder_layers: int | None = None  # None: the layers the model runs at inference
    top_k: int = 300
    verify: bool = True
    verify_images: Sequence[Any] = ()

    @property
    def layers(self) -> tuple[int, int]:
        """(decoder layers the graph runs, decoder layers trained)."""
        run, total = decoder_layers_of(self.detector.module)
        return (self.decoder_layers or run), total

    @cached_property
    def reference(self):
        """The PyTorch side of the parity check: the same weights, unfused, fp32 on the CPU, at the export size and
        depth. The caller's module is shared when it already is exactly that (no copy of the weights)."""
        import torch

        from detkit.inference.torch_detector import TorchDetector

        module = self.detector.module  # predict switches it to eval mode and back itself
        on_cpu_fp32 = all(p.device.type == "cpu" and p.dtype == torch.float32 for p in module.parameters())
        if self.decoder_layers is not None or not on_cpu_fp32:
            module = copy.deepcopy(module).cpu().float().eval()
            if self.decoder_layers is not None:
                set_decoder_layers(module, self.decoder_layers)
        return TorchDetector(module, self.detector.class_map, self.imgsz, "cpu")

    def graph(self) -> DeployGraph:
        """A fresh deploy graph (eval, CPU, fp32) of the model, its post-processor and the calibrator."""
        calibrator = None
        if self.calibrator is not None:
            from detkit.calibration.apply import CalibrationModule

            calibrator = CalibrationModule(self.calibrator, self.drop_below_threshold).eval()
        module = deploy_copy(self.detector.module, self.decoder_layers)
        return DeployGraph(module, calibrator=calibrator, top_k=self.top_k).eval()

    def calibrate_numpy(self) -> Callable | None:
        """The calibrator's numpy apply (what the graph's calibrated scores are checked against), or None."""
        if self.calibrator is None:
            return None
        from detkit.calibration.apply import calibrate_scores

        cal, drop = self.calibrator, self.drop_below_threshold
        return lambda scores, labels: calibrate_scores(cal, scores, labels, drop)

    def metadata(self, format_name: str, format_version: int, graph: dict[str, Any], tools: Sequence[str] = ()):
        """``model.json``: the model, classes, input/output contract and provenance; ``graph`` holds the target's
        own facts (e.g. opset, precision), placed after ``top_k``; ``tools`` adds packages to ``versions``."""
        from detkit.export.graph import INPUT_SPEC, OUTPUT_SPEC

        run, total = self.layers
        detector = self.detector
        src = getattr(detector, "source", None)  # the file the weights came from (resolved by open_detector)
        src = Path(src) if src is not None and Path(src).is_file() else None
        named = str(self.source) if isinstance(self.source, (str, os.PathLike)) else None
        return {
            "format": format_name,
            "version": format_version,
            "classes": detector.class_map.to_dict(),
            "num_classes": len(detector.class_map),
            "imgsz": list(self.imgsz),
            "inputs": INPUT_SPEC,
            "outputs": OUTPUT_SPEC,
            "input_dtype": "uint8",
            "normalisation": "images / 255 inside the graph; no mean/std",
            "resize": "stretch to imgsz with OpenCV INTER_LINEAR (detkit.data.images.resize_image), no letterbox",
            "top_k": self.top_k,
            **graph,
            "decoder_layers": int(run),
            "decoder_layers_trained": total,
            "calibrator": _calibrator_dict(self.calibrator),
            "source": {"path": str(src) if src else named, "sha256": file_sha256(src) if src else None},
            "versions": versions(tools),
            "operating_point": operating_point(self.calibrator, self.drop_below_threshold),
            "stage_scopes": list(getattr(detector.module, "stage_scopes", ("layers",))),
        }

    def parity(self, runtime, precision: str) -> ParityReport:
        """Compare ``runtime`` (a detector running the written file) with the PyTorch reference."""
        return verify_parity(
            self.reference,
            runtime,
            calibrate_numpy=self.calibrate_numpy(),
            real_images=self.verify_images,
            precision=precision,
        )

    def require(self, report: ParityReport) -> ParityReport:
        """``report``, or the one-line refusal naming the user's file when the file disagrees with PyTorch."""
        if not report.passed:
            raise parity_error(report, self.out)
        return report

    @staticmethod
    def finish(metadata: dict[str, Any], parity: ParityReport | None) -> dict[str, Any]:
        """Record the parity report and the creation time (the last entries of ``model.json``)."""
        metadata["parity"] = parity.to_dict() if parity is not None else None
        metadata["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return metadata

    def write(self, path: Path, produce: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
        """Atomically write ``path`` and its ``model.json``: ``produce(tmp)`` writes the complete file at ``tmp``
        and returns its metadata; nothing is left at ``path`` when it raises. Returns (sidecar, metadata)."""
        with atomic_path(path) as tmp:
            metadata = produce(tmp)
            side = atomic_write_json(sidecar_path(path), metadata)
        return side, metadata


def open_job(
    model_source: Any,
    out: str | Path,
    calibrator: Any = None,
    imgsz: Sequence[int] | None = None,
    decoder_layers: int | None = None,
    top_k: int = 300,
    weights: str | Path | None = None,
    class_map: Any = None,
    drop_below_threshold: bool = False,
    verify: bool = True,
    verify_images: Sequence[Any] = (),
) -> ExportJob:
    """Load the detector and calibrator of an export and refuse what cannot be exported (parameters as
    ``export_onnx``'s)."""
    detector = load_detector(model_source, weights, class_map)
    size = (int(imgsz[0]), int(imgsz[1])) if imgsz is not None else tuple(int(s) for s in detector.imgsz)
    cal = load_calibrator(calibrator, detector.class_map)
    if drop_below_threshold and cal is None:
        raise ExportError(
            "drop_below_threshold needs a calibrator: its per-class operating thresholds are what is applied",
            hint="pass a calibrator.json fitted with `detkit calibrate`",
            params=("drop_below_threshold", "calibrator"),
        )
    _, total = decoder_layers_of(detector.module)
    if decoder_layers is not None and decoder_layers > total:
        raise ExportError(
            f"decoder_layers {decoder_layers} exceeds the model's {total} decoder layers",
            hint=f"choose 1..{total}",
            params="decoder_layers",
        )
    return ExportJob(
        source=model_source,
        out=Path(out),
        detector=detector,
        imgsz=size,
        calibrator=cal,
        drop_below_threshold=drop_below_threshold,
        decoder_layers=decoder_layers,
        top_k=top_k,
        verify=verify,
        verify_images=verify_images,
    )


def load_detector(source: Any, weights: Any = None, class_map: Any = None):
    """The PyTorch detector of ``source`` (an export starts from weights, never from an exported file)."""
    from detkit.inference import open_detector

    if isinstance(source, (str, os.PathLike)) and str(source).lower().endswith(".onnx"):
        raise ExportError(
            "the model is already an ONNX export", hint="export from the run dir or checkpoint (.pt)", path=source
        )
    detector = open_detector(source, weights=weights, class_map=class_map, device="cpu")
    if not hasattr(detector, "module"):
        raise ExportError(f"cannot export a {type(detector).__name__}: export needs a PyTorch model")
    return detector


def load_calibrator(calibrator: Any, class_map):
    if calibrator is None:
        return None
    if isinstance(calibrator, (str, os.PathLike)):
        from detkit.calibration import load_calibrator as read

        return read(calibrator, class_map=class_map)
    if hasattr(calibrator, "class_map"):
        calibrator.class_map.check_same(
            class_map, "the calibrator", "the model", hint="calibrate this model with `detkit calibrate`"
        )
    return calibrator


def operating_point(cal, drop_below_threshold: bool = False) -> dict[str, Any] | None:
    """``model.json``'s ``operating_point``: the calibrator's per-class thresholds, and whether the graph applies
    them."""
    if cal is None:
        return None

    def values(arr):
        if arr is None:
            return None
        return {n: (None if not math.isfinite(v) else float(v)) for n, v in zip(cal.class_map.names, arr.tolist())}

    return {
        "rule": "keep a detection when raw score >= pre_threshold and calibrated score >= threshold of its class "
        "(null keeps every detection of the class)",
        "pre_thresholds": values(cal.pre_thresholds),
        "thresholds": values(cal.thresholds),
        "applied_in_graph": bool(drop_below_threshold),
        "applied_by": (
            "the graph: scores outside the operating point are 0"
            if drop_below_threshold
            else "detkit predict (the graph keeps every detection, calibrated, in raw-score order)"
        ),
    }


def _calibrator_dict(cal) -> dict[str, Any] | None:
    if cal is None:
        return None
    from detkit.calibration.io import calibrator_to_dict

    return calibrator_to_dict(cal)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Installed versions of detkit, torch, onnx, onnxruntime and ``extra`` (missing packages left out)."""
    import importlib.metadata as md

    out = {}
    for name in ("detkit", "torch", "onnx", "onnxruntime", *extra):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out
