"""``export_onnx``: one verified ONNX graph from raw images to labels, pixel boxes and (calibrated) scores.

Graph contract (also written to the ``model.json`` sidecar and embedded in the ONNX metadata under ``detkit``):

- inputs: ``images`` uint8 ``[N,3,H,W]`` RGB already stretch-resized to the model input size ``(H, W)`` with
  ``detkit.models.preprocess.resize_image``/``to_batch`` (the graph divides by 255 itself; no mean/std);
  ``orig_sizes`` int64 ``[N,2]`` as (width, height) of the original images;
- outputs: ``labels`` int64 ``[N,K]``, ``boxes`` float32 ``[N,K,4]`` xyxy in original pixels, ``scores`` float32
  ``[N,K]`` (calibrated when exported with a calibrator), K = top_k (300), ordered by the raw score.

With a calibrator every detection keeps a calibrated score and its rank; ``model.json`` records the
calibrator's per-class operating thresholds under ``operating_point`` (``predict`` applies them). Only with
``drop_below_threshold`` does the graph apply them itself (score 0 outside the operating point), and then
``applied_in_graph`` is true and ``detkit eval`` warns that AP covers the kept detections only.

The file is verified before it is renamed into place: onnx.checker, then PyTorch-vs-onnxruntime parity at
batch 1 and 3 (see ``detkit.export.verify``). A failing export leaves no model file behind.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from detkit.errors import DetkitError
from detkit.export.graph import CALIBRATED_OUTPUT_NAMES, INPUT_NAMES, INPUT_SPEC, OUTPUT_NAMES, OUTPUT_SPEC, DeployGraph, decoder_layers_of, deploy_copy, set_decoder_layers
from detkit.inference.onnx_detector import METADATA_KEY, OnnxDetector, sidecar_path
from detkit.export.verify import ParityReport, parity_error, verify_parity
from detkit.utils.atomic import atomic_path, atomic_write_json

MIN_OPSET = 16  # GridSample (the deformable attention sampler) exists from opset 16
MAX_OPSET = 20  # the highest opset of torch's TorchScript-based exporter
FORMAT = "detkit-onnx"
FORMAT_VERSION = 1


@dataclass
class ExportResult:
    model_path: Path
    metadata_path: Path
    metadata: dict[str, Any]
    parity: ParityReport | None
    simplified: bool
    warnings: list[str] = field(default_factory=list)


def check_export_options(opset: int, imgsz: Sequence[int] | None, out: Path, decoder_layers: int | None) -> None:
    """Refuse bad options before any work is done (each a one-line error)."""
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise DetkitError(
            f"unsupported ONNX opset {opset}: detkit exports opset {MIN_OPSET}..{MAX_OPSET}",
            hint=f"opset >= {MIN_OPSET} is needed for GridSample (deformable attention); the default is 17",
        )
    if imgsz is not None:
        if len(imgsz) != 2 or any(int(s) <= 0 or int(s) % 32 for s in imgsz):
            raise DetkitError(
                f"image size {tuple(imgsz)} must be two positive multiples of 32 (height, width)",
                hint="the backbone downsamples by 32, e.g. --imgsz 640 640 or --imgsz 480 640",
            )
    if out.suffix.lower() != ".onnx":
        raise DetkitError("output file must end in .onnx", hint="e.g. --out runs/export/model.onnx", path=out)
    if decoder_layers is not None and int(decoder_layers) < 1:
        raise DetkitError(f"--decoder-layers must be >= 1, got {decoder_layers}")


def export_onnx(
    model_source: Any,
    out: str | Path = "model.onnx",
    calibrator: Any = None,
    imgsz: Sequence[int] | None = None,
    dynamic_batch: bool = True,
    opset: int = 17,
    fp16: bool = False,
    decoder_layers: int | None = None,
    simplify: bool = False,
    verify: bool = True,
    verify_images: Sequence[Any] = (),
    top_k: int = 300,
    weights: str | Path | None = None,
    class_map: Any = None,
    drop_below_threshold: bool = False,
) -> ExportResult:
    """Export ``model_source`` (run dir, checkpoint, ``recipe:NAME`` (+ ``weights``), bare official / Hugging Face
    weights, or a ``TorchDetector``) to ``out``; ``class_map`` (ClassMap, dataset.yaml or names file) names the
    classes of foreign weights.

    ``calibrator`` is a ``calibrator.json`` path or a loaded calibrator; its torch ``apply`` becomes part of the
    graph. ``imgsz`` (H, W) defaults to the model's own input size. ``verify_images`` adds real images (paths or
    uint8 arrays) to the random and synthetic ones used for the parity check. ``drop_below_threshold`` makes the
    graph set the score of every detection outside the calibrator's operating point to 0 (default: keep all).
    """
    import onnx

    out = Path(out)
    check_export_options(opset, imgsz, out, decoder_layers)
    detector = _load_detector(model_source, weights, class_map)
    size = (int(imgsz[0]), int(imgsz[1])) if imgsz is not None else tuple(int(s) for s in detector.imgsz)
    cal = _load_calibrator(calibrator, detector.class_map)
    if drop_below_threshold and cal is None:
        raise DetkitError("drop_below_threshold needs a calibrator: its per-class operating thresholds are what "
                          "is applied", hint="pass a calibrator.json fitted with `detkit calibrate`")
    run_layers, total_layers = decoder_layers_of(detector.module)
    if decoder_layers is not None and decoder_layers > total_layers:
        raise DetkitError(f"--decoder-layers {decoder_layers} exceeds the model's {total_layers} decoder layers", hint=f"choose 1..{total_layers}")

    reference = _reference_detector(detector, size, decoder_layers)
    graph = DeployGraph(deploy_copy(detector.module, decoder_layers),
                        calibrator=_calibration_module(cal, drop_below_threshold), top_k=top_k).eval()
    precision = "fp16" if fp16 else "fp32"
    notes: list[str] = []
    metadata = _metadata(detector, cal, size, dynamic_batch, opset, precision, decoder_layers or run_layers, total_layers, top_k, model_source)
    metadata["operating_point"] = operating_point(cal, drop_below_threshold)

    with atomic_path(out) as tmp:
        _trace(graph, tmp, size, dynamic_batch, opset, calibrated=cal is not None)
        if fp16:
            _convert_fp16(tmp)
        _check(tmp)
        parity = None
        if verify:
            parity = _verify(tmp, reference, cal, metadata, verify_images, precision, drop_below_threshold)
            if not parity.passed:
                raise parity_error(parity, out)
        simplified = False
        if simplify:
            simplified, parity, note = _simplify(tmp, reference, cal, metadata, verify_images, precision,
                                                 dynamic_batch, verify, parity, drop_below_threshold)
            if note:
                notes.append(note)
        metadata["simplified"] = simplified
        metadata["parity"] = parity.to_dict() if parity is not None else None
        metadata["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        proto = onnx.load(str(tmp))
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
        proto.producer_name = "detkit"
        onnx.save(proto, str(tmp))
        side = atomic_write_json(sidecar_path(out), metadata)
    return ExportResult(model_path=out, metadata_path=side, metadata=metadata, parity=parity, simplified=simplified, warnings=notes)


# ---------------------------------------------------------------------------------------------------------------------
# pieces


def _load_detector(source: Any, weights: Any = None, class_map: Any = None):
    from detkit.inference import open_detector

    if isinstance(source, (str, os.PathLike)) and str(source).lower().endswith(".onnx"):
        raise DetkitError("the model is already an ONNX export", hint="export from the run dir or checkpoint (.pt)", path=source)
    detector = open_detector(source, weights=weights, class_map=class_map, device="cpu")
    if not hasattr(detector, "module"):
        raise DetkitError(f"cannot export a {type(detector).__name__}: export needs a PyTorch model")
    return detector


def _reference_detector(detector, size: tuple[int, int], decoder_layers: int | None):
    """The PyTorch side of the parity check: the same weights, unfused, fp32 on the CPU, at the export size and depth.

    The caller's module is shared when it already is exactly that (no copy of the weights); otherwise copied."""
    import torch

    from detkit.api import Detector

    module = detector.module  # Detector.predict switches it to eval mode and back itself
    on_cpu_fp32 = all(p.device.type == "cpu" and p.dtype == torch.float32 for p in module.parameters())
    if decoder_layers is not None or not on_cpu_fp32:
        module = copy.deepcopy(module).cpu().float().eval()
        if decoder_layers is not None:
            set_decoder_layers(module, decoder_layers)
    return Detector(module, detector.class_map, size, "cpu")


def _load_calibrator(calibrator: Any, class_map):
    if calibrator is None:
        return None
    if isinstance(calibrator, (str, os.PathLike)):
        from detkit.calibration import load_calibrator

        return load_calibrator(calibrator, class_map=class_map)
    if hasattr(calibrator, "class_map"):
        calibrator.class_map.check_same(class_map, "the calibrator", "the model", hint="calibrate this model with `detkit calibrate`")
    return calibrator


def _calibration_module(cal, drop_below_threshold: bool = False):
    if cal is None:
        return None
    from detkit.calibration.apply import CalibrationModule

    return CalibrationModule(cal, drop_below_threshold).eval()


def _numpy_apply(cal, drop_below_threshold: bool = False):
    if cal is None:
        return None
    from detkit.calibration.apply import calibrate_scores

    return lambda scores, labels: calibrate_scores(cal, scores, labels, drop_below_threshold)


def operating_point(cal, drop_below_threshold: bool = False) -> dict[str, Any] | None:
    """``model.json``'s ``operating_point``: the calibrator's per-class thresholds, and whether the graph applies
    them."""
    if cal is None:
        return None
    import math

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
        "applied_by": ("the graph: scores outside the operating point are 0" if drop_below_threshold
                       else "detkit predict (the graph keeps every detection, calibrated, in raw-score order)"),
    }


def _trace(graph, path: Path, size: tuple[int, int], dynamic_batch: bool, opset: int, calibrated: bool) -> None:
    import torch

    outputs = CALIBRATED_OUTPUT_NAMES if calibrated else OUTPUT_NAMES
    n = 2 if dynamic_batch else 1  # trace with batch 2 so nothing specialises on a batch of one
    images = torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8)
    sizes = torch.tensor([[size[1], size[0]]] * n, dtype=torch.int64)
    axes = {name: {0: "N"} for name in (*INPUT_NAMES, *outputs)} if dynamic_batch else None
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (images, sizes), str(path), input_names=list(INPUT_NAMES), output_names=list(outputs),
                              dynamic_axes=axes, opset_version=int(opset), do_constant_folding=True, dynamo=False)
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; the user needs the one line
        raise DetkitError(f"ONNX export failed at opset {opset}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                          hint="re-run with --debug for the traceback") from e


def _convert_fp16(path: Path) -> None:
    """Half-precision weights and compute; inputs and outputs keep their types (uint8, int64, float32)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    _toposort(model.graph)  # the converter appends its Cast nodes out of order
    onnx.save(model, str(path))


def _toposort(graph) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (stable Kahn order)."""
    known = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(name in known for name in node.input):
                ordered.append(node)
                known.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise DetkitError("fp16 conversion produced a graph with unresolvable inputs", hint="export without --fp16")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def _check(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001
        raise DetkitError(f"the exported graph fails onnx.checker: {str(e).splitlines()[0]}", hint="re-run with --debug and report it") from e


def _verify(path: Path, reference, cal, metadata, verify_images, precision,
            drop_below_threshold: bool = False) -> ParityReport:
    onnx_det = OnnxDetector(path, metadata=metadata, providers=None)
    return verify_parity(reference, onnx_det, calibrate_numpy=_numpy_apply(cal, drop_below_threshold),
                         real_images=verify_images, precision=precision)


def batch_dims_dynamic(path: Path) -> bool:
    """True when the first dimension of every graph input and output is symbolic (not a fixed number)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if not dims or not dims[0].dim_param or dims[0].HasField("dim_value"):
            return False
    return True


SLIM_ATTEMPTS = ({}, {"no_shape_infer": True})  # the second was exact where full shape inference was not (docs/deploy.md)


def _simplify(path: Path, reference, cal, metadata, verify_images, precision, dynamic_batch, verify, parity,
              drop_below_threshold: bool = False):
    """Slim the graph with onnxslim; keep the result only if the batch dim is still symbolic and, re-verified, it
    still agrees with PyTorch. Tries full slimming, then slimming without shape inference; else keeps the original."""
    import onnx
    import onnxslim

    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.slim.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    slim_tmp = Path(name)
    problems = []
    try:
        for kwargs in SLIM_ATTEMPTS:
            label = "onnxslim" + ("(no_shape_infer)" if kwargs else "")
            try:
                onnx.save(onnxslim.slim(onnx.load(str(path)), **kwargs), str(slim_tmp))
                onnx.checker.check_model(str(slim_tmp), full_check=True)
            except Exception as e:  # noqa: BLE001 - any failure of the optional step means: keep the original
                problems.append(f"{label} failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
                continue
            if dynamic_batch and not batch_dims_dynamic(slim_tmp):
                problems.append(f"{label} fixed the dynamic batch dimension")
                continue
            if verify:
                slim_parity = _verify(slim_tmp, reference, cal, metadata, verify_images, precision,
                                      drop_below_threshold)
                if not slim_parity.passed:
                    problems.append(f"{label} output disagrees with PyTorch ({slim_parity.summary()})")
                    continue
                parity = slim_parity
            os.replace(slim_tmp, path)
            return True, parity, ("; ".join(problems) + f"; {label} kept") if problems else None
    finally:
        slim_tmp.unlink(missing_ok=True)
    return False, parity, "; ".join(problems) + "; kept the unsimplified graph"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _calibrator_dict(cal) -> dict[str, Any] | None:
    if cal is None:
        return None
    from detkit.calibration.io import calibrator_to_dict

    return calibrator_to_dict(cal)


def versions(extra: Sequence[str] = ()) -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("detkit", "torch", "onnx", "onnxruntime", *extra):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def _metadata(detector, cal, size, dynamic_batch, opset, precision, decoder_layers, total_layers, top_k, source) -> dict[str, Any]:
    src = getattr(detector, "source", None)  # the file the weights came from (resolved by open_detector)
    src = Path(src) if src is not None and Path(src).is_file() else None
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "classes": detector.class_map.to_dict(),
        "num_classes": len(detector.class_map),
        "imgsz": list(size),
        "inputs": INPUT_SPEC,
        "outputs": OUTPUT_SPEC,
        "input_dtype": "uint8",
        "normalisation": "images / 255 inside the graph; no mean/std",
        "resize": "stretch to imgsz with OpenCV INTER_LINEAR (detkit.models.preprocess.resize_image), no letterbox",
        "top_k": top_k,
        "dynamic_batch": bool(dynamic_batch),
        "opset": int(opset),
        "precision": precision,
        "decoder_layers": int(decoder_layers),
        "decoder_layers_trained": total_layers,
        "calibrator": _calibrator_dict(cal),
        "source": {"path": str(src) if src else (str(source) if isinstance(source, (str, os.PathLike)) else None),
                   "sha256": _file_sha256(src) if src else None},
        "versions": versions(["onnxslim"]),
    }
