"""INT8 export target: the verified fp32 graph, statically quantized by onnxruntime, with its accuracy cost measured.

``export_int8`` runs the shared export job (``detkit.export.job``) through the fp32 ONNX target (trace,
onnx.checker, parity with PyTorch) into a private temporary file, then ``quantize_onnx`` turns that file into a
QDQ graph:

1. ``quant_pre_process`` (ONNX shape inference + onnxruntime graph optimisation; the symbolic shape pass is skipped
   because it cannot follow the post-processor's data-dependent shapes);
2. calibration: ``calib_images`` images of the calibration split, decoded and resized by the very pre-processing
   the model uses (``detkit.data.images``), fed one by one; activation ranges are computed once
   (``minmax``, ``entropy`` or ``percentile``) and cached for every quantization below;
3. a **sensitivity pass**: the candidate nodes (Conv, MatMul, Gemm inside the model, plus the ops between the
   convolutions of the backbone and encoder (``CONNECTIVE_OP_TYPES``); never the post-processor or an
   embedded calibrator) are grouped by model scope (``backbone.<stage list>.2``, ``decoder.layers.0``, ...); each
   group alone is quantized and the AP drop against the fp32 file is measured on the calibration images
   (with the mean change of the top-100 scores as a tie-breaker);
4. **float islands**: starting from "every group quantized", the worst groups are kept in float one at a time until
   the drop on the calibration images is at most ``target_ap_drop`` points or ``max_float_groups`` are float.

``export_int8`` then evaluates the fp32 and the INT8 file on the evaluation split and refuses (nothing written)
when AP drops by more than ``max_ap_drop`` points. Both APs, the sensitivity table, the float groups and the
calibration set go into ``model.json``. See docs/deploy.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from detkit.errors import DetkitError
from detkit.export.errors import ExportError

METHODS = ("minmax", "entropy", "percentile")
COMPUTE_OP_TYPES = ("Conv", "MatMul", "Gemm")
# The ops between convolutions. Quantized too, a chain such as Conv → Relu → Add or Conv → Sigmoid·Mul (SiLU) stays
# int8 from one QLinearConv to the next instead of being dequantized and re-quantized around every float op (the
# Q/DQ pairs cost more time than the float op itself; docs/deploy.md). Only in CONNECTIVE_SCOPES: the decoder's
# element-wise ops compute the deformable-attention sampling locations and stay float.
CONNECTIVE_OP_TYPES = ("Relu", "Add", "Mul", "Sigmoid", "Concat", "MaxPool", "AveragePool", "Resize")
CONNECTIVE_SCOPES = ("backbone", "encoder")
DEFAULT_OP_TYPES = COMPUTE_OP_TYPES + CONNECTIVE_OP_TYPES
MODEL_SCOPE = "module"  # DeployGraph's attribute holding the detector; the post-processor and calibrator lie outside
# module lists kept apart per index (one group per stage / layer); the model names its own, recorded in model.json
DEFAULT_STAGE_SCOPES = ("layers",)
TOP_SCORES = 100  # scores compared for the tie-breaking output error


# ---------------------------------------------------------------------------------------------------------------------
# images


@dataclass
class ImageSample:
    """Decoded images of a split (a seeded subset) with their COCO ground truth, kept in memory."""

    split: str
    images: list[np.ndarray]
    image_ids: list[int]
    file_names: list[str]
    coco: Any  # CocoData restricted to the sample; None for plain images (no labels: no AP)
    seed: int

    def __len__(self) -> int:
        return len(self.images)


def _dataset(data: Any):
    from detkit.data.dataset import DatasetSpec, load_dataset

    return data if isinstance(data, DatasetSpec) else load_dataset(data)


def sample_split(dataset: Any, split: str, limit: int, seed: int = 0, what: str = "calibration") -> ImageSample:
    """Up to ``limit`` images of ``split`` (seeded choice, dataset order kept), decoded; refuses an empty split."""
    from detkit.data.coco import CocoData, read_coco
    from detkit.data.images import load_image
    from detkit.evaluation.inference import image_paths

    spec = _dataset(dataset)
    split_spec = spec.split(split)
    coco = read_coco(split_spec.annotations)
    if not coco.images:
        raise DetkitError(
            f"the {what} split '{split}' has no images",
            hint=f"choose a split with images for the {what}",
            path=split_spec.annotations,
        )
    n = len(coco.images)
    keep = np.sort(np.random.default_rng(seed).choice(n, size=min(int(limit), n), replace=False))
    images = [coco.images[i] for i in keep]
    ids = {int(im["id"]) for im in images}
    subset = CocoData(
        images=images,
        annotations=[a for a in coco.annotations if int(a["image_id"]) in ids],
        categories=coco.categories,
    )
    paths, image_ids = image_paths(subset, Path(split_spec.images), split_spec.annotations)
    return ImageSample(
        split, [load_image(p) for p in paths], image_ids.tolist(), [im["file_name"] for im in images], subset, seed
    )


def image_sample(images: Sequence[Any], limit: int) -> ImageSample:
    """Plain images (paths or uint8 HWC arrays) as a calibration sample without labels."""
    from detkit.data.images import as_image

    if not len(images):
        raise DetkitError("calib_data is an empty list of images", hint="give at least one calibration image")
    chosen = list(images)[: int(limit)]
    names = [str(im) if not isinstance(im, np.ndarray) else f"array {i}" for i, im in enumerate(chosen)]
    return ImageSample(
        "images", [as_image(im, i) for i, im in enumerate(chosen)], list(range(len(chosen))), names, None, 0
    )


def _reader(sample: ImageSample, imgsz: tuple[int, int]):
    """An onnxruntime ``CalibrationDataReader`` feeding the graph's own inputs, one image at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    from detkit.data.images import to_batch

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter(sample.images)

        def get_next(self):
            img = next(self._items, None)
            if img is None:
                return None
            batch, sizes = to_batch([img], imgsz)
            return {"images": batch.numpy(), "orig_sizes": sizes.numpy()}

    return Reader()


# ---------------------------------------------------------------------------------------------------------------------
# node groups


def node_group(name: str, stage_scopes: Sequence[str] = DEFAULT_STAGE_SCOPES) -> str | None:
    """The sensitivity group of a node of the model scope, e.g. ``/module/backbone/<stage list>.2/...`` →
    ``backbone.<stage list>.2`` when the model named that list in ``stage_scopes``, ``/module/encoder/input_proj.1/
    conv/Conv`` → ``encoder.input_proj``; None outside."""
    parts = [p for p in name.split("/") if p]
    if len(parts) < 3 or parts[0] != MODEL_SCOPE:
        return None
    if len(parts) == 3:
        return parts[1]
    head, _, index = parts[2].partition(".")
    sub = parts[2] if head in stage_scopes and index.isdigit() else head
    return f"{parts[1]}.{sub}"


def candidate_groups(
    model, op_types: Sequence[str] = DEFAULT_OP_TYPES, stage_scopes: Sequence[str] = DEFAULT_STAGE_SCOPES
) -> dict[str, list[str]]:
    """Quantizable nodes of the model scope by group, in graph order (connective ops only in their scopes)."""
    groups: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type in op_types:
            g = node_group(node.name, stage_scopes)
            if g is None or (node.op_type in CONNECTIVE_OP_TYPES and g.split(".")[0] not in CONNECTIVE_SCOPES):
                continue
            groups.setdefault(g, []).append(node.name)
    return groups


def cpu_int8_flags() -> dict[str, Any]:
    """x86 integer dot-product support; without VNNI the weights use 7 bits (``reduce_range``) to avoid overflow."""
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    found = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "avx2", "avx512f"})
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686")
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return {"machine": platform.machine(), "flags": found, "vnni": vnni, "reduce_range": bool(x86 and not vnni)}


# ---------------------------------------------------------------------------------------------------------------------
# quantization


@dataclass
class GroupSensitivity:
    group: str
    nodes: int
    ap_drop: float  # AP points lost on the calibration images when only this group is quantized
    score_error: float  # mean |Δ| of the sorted top-100 scores against fp32

    def line(self) -> str:
        return f"{self.group} ({self.nodes} nodes) −{self.ap_drop:.2f} AP"


@dataclass
class Int8Report:
    method: str
    op_types: list[str]
    calibration: dict[str, Any]
    cpu: dict[str, Any]
    quantized_groups: list[str]
    float_groups: list[str]
    quantized_nodes: int
    float_nodes: int
    sample_ap: dict[str, float]  # fp32 / int8 AP (fractions) on the calibration images
    sensitivity: list[GroupSensitivity] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def worst(self, k: int = 3) -> list[GroupSensitivity]:
        return self.sensitivity[:k]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """onnxruntime's quantization tools log warnings through the root logger; keep them off the user's console."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _Quantizer:
    """One pre-processed fp32 graph, calibrated once, quantized with any set of nodes (ranges from the cache)."""

    def __init__(
        self,
        fp32_path: Path,
        workdir: Path,
        sample: ImageSample,
        imgsz: tuple[int, int],
        method: str,
        op_types: Sequence[str],
        reduce_range: bool,
        stage_scopes: Sequence[str] = DEFAULT_STAGE_SCOPES,
    ):
        import onnx
        from onnxruntime.quantization import CalibrationMethod, quant_pre_process

        self.workdir, self.op_types, self.reduce_range = workdir, list(op_types), reduce_range
        self.pre = workdir / "pre.onnx"
        with _quiet_ort():
            quant_pre_process(str(fp32_path), str(self.pre), skip_symbolic_shape=True)
        self.groups = candidate_groups(onnx.load(str(self.pre), load_external_data=False), op_types, stage_scopes)
        self.method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[method]
        self.cache = workdir / "ranges.json"
        self.sample, self.imgsz = sample, imgsz
        self.count = 0

    def quantize(self, groups: Sequence[str], out: Path | None = None) -> Path:
        """Quantize the nodes of ``groups`` (everything else stays float) into ``out`` (default: a work file)."""
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        nodes = [n for g in groups for n in self.groups[g]]
        if out is None:
            self.count += 1
            out = self.workdir / f"q{self.count}.onnx"
        reader = None if self.cache.is_file() else _reader(self.sample, self.imgsz)
        with _quiet_ort():
            quantize_static(
                str(self.pre),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=self.op_types,
                per_channel=True,
                reduce_range=self.reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=nodes,
                calibrate_method=self.method,
                calibration_cache_path=str(self.cache),
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "CalibPercentile": 99.999},
            )
        return out


def _outputs(path: Path, metadata: dict[str, Any], sample: ImageSample) -> list[tuple[np.ndarray, ...]]:
    from detkit.export.runtime import OnnxDetector

    return OnnxDetector(path, metadata=metadata, providers=["CPUExecutionProvider"]).infer(sample.images)


def _sample_ap(outputs, sample: ImageSample, class_map) -> float:
    if sample.coco is None:
        return 0.0
    from detkit.evaluation.coco_metrics import evaluate_coco
    from detkit.evaluation.detections import DetectionTable

    table = DetectionTable.concat(
        DetectionTable.from_xyxy(i, boxes, scores, class_map.labels_to_category_ids(labels))
        for i, (labels, boxes, scores, _) in zip(sample.image_ids, outputs)
    )
    return float(evaluate_coco(sample.coco, table, class_map)["AP"] or 0.0)


def _score_error(outputs, reference) -> float:
    k = TOP_SCORES
    a = np.stack([np.sort(o[3])[::-1][:k] for o in outputs])
    b = np.stack([np.sort(o[3])[::-1][:k] for o in reference])
    return float(np.abs(a - b).mean())


def check_int8_options(
    calib_data: Any, calib_images: int, method: str, max_ap_drop: float | None = None, max_float_groups: int = 0
) -> None:
    """Refuse bad INT8 options before any work (each a one-line error naming the parameter)."""
    if calib_data is None:
        raise ExportError(
            "INT8 quantization needs calibration images, and calib_data is not given",
            hint="pass a dataset (dataset.yaml) whose calibration split holds real images",
            params="calib_data",
        )
    if int(calib_images) < 1:
        raise ExportError(
            f"calib_images must be >= 1, got {calib_images}",
            hint="100 to 300 images are typical",
            params="calib_images",
        )
    if method not in METHODS:
        raise ExportError(
            f"unknown INT8 calibration method '{method}'", hint=f"choose from {', '.join(METHODS)}", params="method"
        )
    if max_ap_drop is not None and not float(max_ap_drop) >= 0:
        raise ExportError(f"max_ap_drop must be >= 0 AP points, got {max_ap_drop}", params="max_ap_drop")
    if int(max_float_groups) < 0:
        raise ExportError(f"max_float_groups must be >= 0, got {max_float_groups}", params="max_float_groups")


def quantize_onnx(
    fp32_path: str | Path,
    out: str | Path,
    calib_data: Any,
    calib_split: str = "calib",
    calib_images: int = 100,
    method: str = "minmax",
    op_types: Sequence[str] = DEFAULT_OP_TYPES,
    sensitivity: bool = True,
    target_ap_drop: float = 0.5,
    max_float_groups: int = 3,
    float_groups: Sequence[str] = (),
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
) -> Int8Report:
    """Quantize the fp32 detkit ONNX file ``fp32_path`` into ``out`` (QDQ, per-channel S8 weights, U8 activations).

    ``calib_data`` is a dataset (``dataset.yaml``, its folder or a ``DatasetSpec``) whose ``calib_split`` supplies the
    calibration images, or a list of images (paths or uint8 arrays; no labels, so no sensitivity pass).
    With ``sensitivity`` the groups are measured one by one and the worst kept in float (see the
    module docstring); ``float_groups`` are kept in float in any case. ``out`` receives the graph only: metadata is
    the caller's (``export_int8`` embeds it). Returns what was done and measured.
    """
    from detkit.data.classmap import ClassMap
    from detkit.export.runtime import read_model_metadata
    from detkit.utils.progress import ProgressTask

    check_int8_options(calib_data, calib_images, method, max_float_groups=max_float_groups)
    fp32_path, out = Path(fp32_path), Path(out)
    meta = metadata if metadata is not None else read_model_metadata(fp32_path)
    if meta.get("precision", "fp32") != "fp32":
        raise DetkitError(
            f"INT8 quantization starts from an fp32 graph; this one is {meta.get('precision')}", path=fp32_path
        )
    class_map = ClassMap.from_dict(meta["classes"])
    imgsz = (int(meta["imgsz"][0]), int(meta["imgsz"][1]))
    if isinstance(calib_data, (list, tuple)):
        if sensitivity:
            raise DetkitError(
                "the sensitivity pass measures AP and needs a labelled dataset, not a list of images",
                hint="pass a dataset as calib_data, or sensitivity=False",
            )
        sample = image_sample(calib_data, calib_images)
    else:
        spec = _dataset(calib_data)
        spec.class_map.check_same(
            class_map,
            f"the calibration dataset {spec.path}",
            "the model",
            hint="calibrate with the model's own dataset",
        )
        sample = sample_split(spec, calib_split, calib_images, seed=seed)
    cpu = cpu_int8_flags()
    with tempfile.TemporaryDirectory(prefix="detkit-int8-") as work:
        scopes = meta.get("stage_scopes") or DEFAULT_STAGE_SCOPES
        q = _Quantizer(fp32_path, Path(work), sample, imgsz, method, op_types, cpu["reduce_range"], scopes)
        names = list(q.groups)
        unknown = [g for g in float_groups if g not in q.groups]
        if unknown:
            raise DetkitError(f"unknown float group(s) {unknown}", hint=f"groups of this model: {', '.join(names)}")
        if not names:
            raise DetkitError(f"the graph has no {'/'.join(op_types)} nodes to quantize", path=fp32_path)
        reference = _outputs(fp32_path, meta, sample)
        fp32_ap = _sample_ap(reference, sample, class_map)

        def measure(groups: Sequence[str]) -> tuple[float, float]:
            outputs = _outputs(q.quantize(groups), meta, sample)
            return 100.0 * (fp32_ap - _sample_ap(outputs, sample, class_map)), _score_error(outputs, reference)

        floated = list(dict.fromkeys(float_groups))
        progress = ProgressTask("INT8 sensitivity", total=len(names) + 1 if sensitivity else 1)
        try:
            drop, err = measure([g for g in names if g not in floated])  # first: calibrates and fills the cache
            progress.advance(1)
            table: list[GroupSensitivity] = []
            if sensitivity:
                for g in names:
                    g_drop, g_err = measure([g])
                    table.append(GroupSensitivity(g, len(q.groups[g]), round(g_drop, 3) + 0.0, round(g_err, 6)))
                    progress.advance(1)
                table.sort(key=lambda s: (-s.ap_drop, -s.score_error))
                order = [s.group for s in table if s.group not in floated]
                while drop > target_ap_drop and order and len(floated) < len(float_groups) + max_float_groups:
                    floated.append(order.pop(0))
                    drop, err = measure([g for g in names if g not in floated])
        finally:
            progress.close()
        quantized = [g for g in names if g not in floated]
        q.quantize(quantized, out)
    notes = []
    if sensitivity and drop > target_ap_drop:
        notes.append(f"AP drop on the calibration images still {drop:.2f} points with {len(floated)} float group(s)")
    return Int8Report(
        method=method,
        op_types=list(op_types),
        calibration={"split": calib_split, "images": len(sample), "seed": seed, "files": sample.file_names},
        cpu=cpu,
        quantized_groups=quantized,
        float_groups=floated,
        quantized_nodes=sum(len(q.groups[g]) for g in quantized),
        float_nodes=sum(len(q.groups[g]) for g in floated),
        sample_ap={"fp32": fp32_ap, "int8": fp32_ap - drop / 100.0, "score_error": err},
        sensitivity=table if sensitivity else [],
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------------------------------
# the export target


@dataclass
class Int8ExportResult:
    model_path: Path
    metadata_path: Path
    metadata: dict[str, Any]
    report: Int8Report
    accuracy: dict[str, Any]
    fp32_parity: Any
    warnings: list[str] = field(default_factory=list)


def default_eval_split(spec) -> str:
    for name in ("val", "test"):
        if spec.has_split(name):
            return name
    raise ExportError(
        "the dataset has neither a 'val' nor a 'test' split to measure the INT8 AP on "
        f"(it has: {', '.join(spec.splits)})",
        hint="name the evaluation split (eval_split)",
        path=spec.path,
        params="eval_split",
    )


def evaluate_file(path: Path, metadata: dict[str, Any], spec, split: str) -> dict[str, Any]:
    """Headline COCO metrics of an exported file on a dataset split (the same path ``detkit eval`` takes)."""
    from detkit.evaluation.coco_metrics import evaluate_coco
    from detkit.evaluation.inference import predict_split
    from detkit.export.runtime import OnnxDetector

    split_spec = spec.split(split)
    det = OnnxDetector(path, metadata=metadata, providers=["CPUExecutionProvider"])
    metrics = evaluate_coco(split_spec.annotations, predict_split(det, split_spec), det.class_map)
    return {k: metrics[k] for k in ("AP", "AP50", "AP75")} | {"num_images": metrics["num_images"]}


def export_int8(
    model_source: Any,
    out: str | Path = "model_int8.onnx",
    calib_data: Any = None,
    calib_split: str = "calib",
    calib_images: int = 100,
    method: str = "minmax",
    eval_split: str | None = None,
    max_ap_drop: float = 1.0,
    max_float_groups: int = 3,
    sensitivity: bool = True,
    op_types: Sequence[str] = DEFAULT_OP_TYPES,
    seed: int = 0,
    **export_options: Any,
) -> Int8ExportResult:
    """Export ``model_source`` as a verified fp32 graph, quantize it to INT8 and measure what it costs.

    ``export_options`` are ``export_onnx``'s (``calibrator``, ``imgsz``, ``dynamic_batch``, ``opset``,
    ``decoder_layers``, ``simplify``, ``verify_images``, ``top_k``). The INT8 file and both APs on ``eval_split``
    (default val, else test) are written only when AP drops by at most ``max_ap_drop`` points.
    """
    from detkit.export.job import versions
    from detkit.export.targets.onnx import check_export_options, prepare, write_onnx

    out = Path(out)
    check_int8_options(calib_data, calib_images, method, max_ap_drop, max_float_groups)
    if export_options.get("fp16"):
        raise ExportError("fp16 and int8 are two different export precisions", hint="choose one", params="fp16")
    if export_options.get("verify") is False:
        raise ExportError(
            "the INT8 export needs the fp32 graph verified first (verify=False)",
            hint="leave verification on",
            params="verify",
        )
    check_export_options(
        export_options.get("opset", 17), export_options.get("imgsz"), out, export_options.get("decoder_layers")
    )
    spec = _dataset(calib_data)
    eval_split = eval_split or default_eval_split(spec)
    spec.split(eval_split)
    sample_split(spec, calib_split, 1, what="calibration")  # an empty or missing split is refused before any work

    with tempfile.TemporaryDirectory(prefix="detkit-int8-export-") as work:
        job, options = prepare(model_source, out, **export_options)  # the shared job: its errors name `out`
        fp32 = write_onnx(job, options, path=Path(work) / out.with_suffix(".fp32.onnx").name)
        fp32_path, found = fp32.model_path, {}

        def produce(tmp: Path) -> dict[str, Any]:
            found["report"] = report = quantize_onnx(
                fp32_path,
                tmp,
                spec,
                calib_split,
                calib_images,
                method,
                op_types,
                sensitivity=sensitivity,
                target_ap_drop=max_ap_drop / 2.0,
                max_float_groups=max_float_groups,
                seed=seed,
                metadata=fp32.metadata,
            )
            found["accuracy"] = accuracy = _accuracy(fp32_path, tmp, fp32.metadata, spec, eval_split, max_ap_drop)
            if accuracy["ap_drop"] > max_ap_drop:
                worst = "; ".join(s.line() for s in report.worst()) or "no sensitivity pass was run"
                raise ExportError(
                    f"INT8 costs {accuracy['ap_drop']:.2f} AP points on split '{eval_split}' "
                    f"(fp32 {100 * accuracy['fp32']['AP']:.2f}, int8 {100 * accuracy['int8']['AP']:.2f}), "
                    f"more than max_ap_drop {max_ap_drop:g}; worst groups: {worst}",
                    hint="keep more groups in float (max_float_groups), try another calibration method, "
                    "or accept a larger drop",
                    path=out,
                    params=("max_float_groups", "method", "max_ap_drop"),
                )
            metadata = _int8_metadata(fp32.metadata, report, accuracy, versions)
            _embed(tmp, metadata)
            return metadata

        side, metadata = job.write(out, produce)
    report, accuracy = found["report"], found["accuracy"]
    return Int8ExportResult(out, side, metadata, report, accuracy, fp32.parity, [*fp32.warnings, *report.notes])


def _accuracy(
    fp32_path: Path, int8_path: Path, meta: dict[str, Any], spec, split: str, max_ap_drop: float
) -> dict[str, Any]:
    fp32 = evaluate_file(fp32_path, meta, spec, split)
    int8 = evaluate_file(int8_path, meta, spec, split)
    drop = round(100.0 * ((fp32["AP"] or 0.0) - (int8["AP"] or 0.0)), 4)
    return {
        "split": split,
        "dataset": str(spec.path),
        "fp32": fp32,
        "int8": int8,
        "ap_drop": drop,
        "max_ap_drop": float(max_ap_drop),
        "unit": "AP as fractions; ap_drop in AP points (fp32 − int8, ×100)",
    }


def _int8_metadata(fp32_meta: dict[str, Any], report: Int8Report, accuracy: dict[str, Any], versions) -> dict[str, Any]:
    meta = json.loads(json.dumps(fp32_meta))
    meta["precision"] = "int8"
    meta["int8"] = {
        **report.to_dict(),
        "format": "QDQ",
        "weights": "int8 per output channel (symmetric)",
        "activations": "uint8 per tensor (asymmetric)",
        "fp32_parity": fp32_meta.get("parity"),
    }
    meta["accuracy"] = accuracy
    meta["parity"] = None  # the PyTorch parity belongs to the fp32 graph: see int8.fp32_parity and accuracy
    meta["simplified"] = fp32_meta.get("simplified", False)
    meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta["versions"] = versions(["onnxslim"])
    return meta


def _embed(path: Path, metadata: dict[str, Any]) -> None:
    import onnx

    from detkit.export.targets.onnx import embed_metadata

    embed_metadata(path, metadata)
    try:
        onnx.checker.check_model(str(path), full_check=False)
    except Exception as e:  # noqa: BLE001
        raise ExportError(
            f"the quantized graph fails onnx.checker: {str(e).splitlines()[0]}",
            hint="the checker's own error is chained to this one; please report it",
        ) from e
