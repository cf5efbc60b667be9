"""The ONNX export target (fp32, fp16): ``export_onnx`` writes one verified ONNX graph from raw images to labels,
pixel boxes and (calibrated) scores.

Graph contract (also written to the ``model.json`` sidecar and embedded in the ONNX metadata under ``detkit``):

- inputs: ``images`` uint8 ``[N,3,H,W]`` RGB already stretch-resized to the model input size ``(H, W)`` with
  ``detkit.data.images.resize_image``/``to_batch`` (the graph divides by 255 itself; no mean/std);
  ``orig_sizes`` int64 ``[N,2]`` as (width, height) of the original images;
- outputs: ``labels`` int64 ``[N,K]``, ``boxes`` float32 ``[N,K,4]`` xyxy in original pixels, ``scores`` float32
  ``[N,K]`` (calibrated when exported with a calibrator), K = top_k (300), ordered by the raw score.

With a calibrator every detection keeps a calibrated score and its rank; ``model.json`` records the
calibrator's per-class operating thresholds under ``operating_point`` (``predict`` applies them). Only with
``drop_below_threshold`` does the graph apply them itself (score 0 outside the operating point), and then
``applied_in_graph`` is true and ``detkit eval`` warns that AP covers the kept detections only.

The file is verified before it is renamed into place: onnx.checker, then PyTorch-vs-onnxruntime parity at
batch 1 and 3 (see ``detkit.export.verify``). A failing export leaves no model file behind. What is not
ONNX-specific (the detector, deploy graph, calibrator, metadata, verification, atomic writing) is the shared
export job, ``detkit.export.job``.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detkit.export.errors import ExportError
from detkit.export.graph import CALIBRATED_OUTPUT_NAMES, INPUT_NAMES, OUTPUT_NAMES
from detkit.export.job import ExportJob, check_decoder_layers, check_imgsz, open_job
from detkit.export.verify import ParityReport
from detkit.inference.onnx_detector import METADATA_KEY, OnnxDetector

MIN_OPSET = 16  # GridSample (the deformable attention sampler) exists from opset 16
MAX_OPSET = 20  # the highest opset of torch's TorchScript-based exporter
FORMAT = "detkit-onnx"
FORMAT_VERSION = 1
TOOLS = ("onnxslim",)  # recorded in the metadata's versions besides detkit, torch, onnx and onnxruntime


@dataclass
class ExportResult:
    model_path: Path
    metadata_path: Path
    metadata: dict[str, Any]
    parity: ParityReport | None
    simplified: bool
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OnnxOptions:
    """What the ONNX target adds to the job: opset, batch dimension, precision and optional slimming."""

    opset: int = 17
    dynamic_batch: bool = True
    fp16: bool = False
    simplify: bool = False

    @property
    def precision(self) -> str:
        return "fp16" if self.fp16 else "fp32"


def check_export_options(opset: int, imgsz: Sequence[int] | None, out: Path, decoder_layers: int | None) -> None:
    """Refuse bad options before any work is done (each a one-line error)."""
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ExportError(
            f"unsupported ONNX opset {opset}: detkit exports opset {MIN_OPSET}..{MAX_OPSET}",
            hint=f"opset >= {MIN_OPSET} is needed for GridSample (deformable attention); the default is 17",
            params="opset",
        )
    check_imgsz(imgsz)
    if Path(out).suffix.lower() != ".onnx":
        raise ExportError("output file must end in .onnx", hint="e.g. runs/export/model.onnx", path=out, params="out")
    check_decoder_layers(decoder_layers)


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
    job, options = prepare(
        model_source,
        out,
        calibrator=calibrator,
        imgsz=imgsz,
        dynamic_batch=dynamic_batch,
        opset=opset,
        fp16=fp16,
        decoder_layers=decoder_layers,
        simplify=simplify,
        verify=verify,
        verify_images=verify_images,
        top_k=top_k,
        weights=weights,
        class_map=class_map,
        drop_below_threshold=drop_below_threshold,
    )
    return write_onnx(job, options)


def prepare(
    model_source: Any,
    out: str | Path,
    opset: int = 17,
    dynamic_batch: bool = True,
    fp16: bool = False,
    simplify: bool = False,
    **job_options: Any,
) -> tuple[ExportJob, OnnxOptions]:
    """Check ``export_onnx``'s options, then open the job (``detkit.export.job.open_job`` takes the rest)."""
    out = Path(out)
    check_export_options(opset, job_options.get("imgsz"), out, job_options.get("decoder_layers"))
    options = OnnxOptions(opset=int(opset), dynamic_batch=bool(dynamic_batch), fp16=bool(fp16), simplify=simplify)
    return open_job(model_source, out, **job_options), options


def write_onnx(job: ExportJob, options: OnnxOptions, path: Path | None = None) -> ExportResult:
    """Trace the job's graph, convert, check, verify and (optionally) slim it, then write it with its metadata to
    ``path`` (default: the job's ``out``; errors name ``out`` in any case)."""
    path = job.out if path is None else Path(path)
    precision = options.precision
    graph_facts = {"dynamic_batch": options.dynamic_batch, "opset": options.opset, "precision": precision}
    metadata = job.metadata(FORMAT, FORMAT_VERSION, graph_facts, tools=TOOLS)
    result: dict[str, Any] = {"parity": None, "simplified": False, "notes": []}

    def produce(tmp: Path) -> dict[str, Any]:
        trace(job.graph(), tmp, job.imgsz, options.dynamic_batch, options.opset, calibrated=job.calibrator is not None)
        if options.fp16:
            convert_fp16(tmp)
        check_graph(tmp)
        parity = job.require(job.parity(_runtime(tmp, metadata), precision)) if job.verify else None
        if options.simplify:
            simplified, parity, note = _simplify(tmp, job, metadata, precision, options.dynamic_batch, parity)
            result["simplified"] = simplified
            if note:
                result["notes"].append(note)
        metadata["simplified"] = result["simplified"]
        result["parity"] = parity
        embed_metadata(tmp, job.finish(metadata, parity))
        return metadata

    side, metadata = job.write(path, produce)
    return ExportResult(
        model_path=path,
        metadata_path=side,
        metadata=metadata,
        parity=result["parity"],
        simplified=result["simplified"],
        warnings=result["notes"],
    )


# ---------------------------------------------------------------------------------------------------------------------
# pieces


def _runtime(path: Path, metadata: dict[str, Any]) -> OnnxDetector:
    return OnnxDetector(path, metadata=metadata, providers=None)


def trace(graph, path: Path, size: tuple[int, int], dynamic_batch: bool, opset: int, calibrated: bool) -> None:
    """``torch.onnx.export`` of the deploy graph (TorchScript exporter), batch dimension symbolic or 1."""
    import torch

    outputs = CALIBRATED_OUTPUT_NAMES if calibrated else OUTPUT_NAMES
    n = 2 if dynamic_batch else 1  # trace with batch 2 so nothing specialises on a batch of one
    images = torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8)
    sizes = torch.tensor([[size[1], size[0]]] * n, dtype=torch.int64)
    axes = {name: {0: "N"} for name in (*INPUT_NAMES, *outputs)} if dynamic_batch else None
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (images, sizes),
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=list(outputs),
                dynamic_axes=axes,
                opset_version=int(opset),
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; the user needs the one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise ExportError(
            f"ONNX export failed at opset {opset}: {type(e).__name__}: {first}",
            hint="the exporter's own error is chained to this one",
        ) from e


def convert_fp16(path: Path) -> None:
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
            raise ExportError(
                "fp16 conversion produced a graph with unresolvable inputs", hint="export without fp16", params="fp16"
            )
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def check_graph(path: Path) -> None:
    """``onnx.checker`` (full check, with shape inference) of a written graph."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001
        raise ExportError(
            f"the exported graph fails onnx.checker: {str(e).splitlines()[0]}",
            hint="the checker's own error is chained to this one; please report it",
        ) from e


def embed_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` in the ONNX file itself (``metadata_props`` under ``detkit``), replacing what was there."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    proto.producer_name = "detkit"
    onnx.save(proto, str(path))


def batch_dims_dynamic(path: Path) -> bool:
    """True when the first dimension of every graph input and output is symbolic (not a fixed number)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if not dims or not dims[0].dim_param or dims[0].HasField("dim_value"):
            return False
    return True


# the second attempt was exact where full shape inference was not (docs/deploy.md)
SLIM_ATTEMPTS = ({}, {"no_shape_infer": True})


def _simplify(path: Path, job: ExportJob, metadata, precision: str, dynamic_batch: bool, parity):
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
            if job.verify:
                slim_parity = job.parity(_runtime(slim_tmp, metadata), precision)
                if not slim_parity.passed:
                    problems.append(f"{label} output disagrees with PyTorch ({slim_parity.summary()})")
                    continue
                parity = slim_parity
            os.replace(slim_tmp, path)
            return True, parity, ("; ".join(problems) + f"; {label} kept") if problems else None
    finally:
        slim_tmp.unlink(missing_ok=True)
    return False, parity, "; ".join(problems) + "; kept the unsimplified graph"
