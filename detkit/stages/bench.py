"""``benchmark``: end-to-end latency of a detector per backend, batch size and thread count.

Each measured iteration has three timed stages, the same for both backends:

- ``pre``: stretch-resize + batching of in-memory uint8 frames (``detkit.data.images.to_batch``);
- ``infer``: the graph from the uint8 batch to top-k (labels, boxes, scores): for PyTorch eager the module's
  forward plus the post-processor (``torch.inference_mode``), for onnxruntime and OpenVINO one run of the exported
  graph (it holds both);
- ``post``: confidence filter and label → category id on the host (numpy).

Frames are random 720×1280 images (a typical camera frame, so the resize costs what it costs in deployment).
At least ``warmup`` (≥ 3) iterations run untimed first; figures are the median and 90th percentile over ``iters``.
All configurations of one (threads, batch) pair are timed interleaved, one iteration of each in turn, so a load
that other processes put on the machine hits every row alike.

Precision variants (``variants``: fp32, fp16, int8) are ONNX files: the model's own export, or derived from its fp32
graph (fp16 by conversion, int8 by ``export.targets.int8.quantize_onnx`` on the dataset's calibration split). With a
dataset, each variant's AP is measured on ``split`` from the very file that is timed.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detkit.errors import DetkitError
from detkit.utils.progress import track

BACKENDS = ("torch", "onnxruntime", "openvino")
EXPORTED = ("onnxruntime", "openvino")  # backends that run the exported ONNX files (openvino: optional extra)
VARIANTS = ("fp32", "fp16", "int8")
FRAME_HW = (720, 1280)


@dataclass
class BenchRow:
    backend: str
    batch: int
    threads: int
    precision: str
    pre_ms: float
    infer_ms: float
    post_ms: float
    total_ms: float
    total_p90_ms: float
    infer_p90_ms: float
    images_per_s: float
    ap: float | None = None  # AP of this variant's file on the benchmark's dataset split (None without a dataset)


@dataclass
class BenchResult:
    model: str
    imgsz: tuple[int, int]
    iters: int
    warmup: int
    device: dict[str, Any]
    versions: dict[str, str]
    rows: list[BenchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    accuracy: dict[str, Any] = field(default_factory=dict)  # variant -> {"split", "AP", "AP50", "AP75", "num_images"}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["imgsz"] = list(self.imgsz)
        return d

    def row(self, backend: str, batch: int, threads: int, precision: str | None = None) -> BenchRow | None:
        return next(
            (
                r
                for r in self.rows
                if (r.backend, r.batch, r.threads) == (backend, batch, threads) and precision in (None, r.precision)
            ),
            None,
        )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(torch_device: str) -> dict[str, Any]:
    import torch

    info = {
        "cpu": cpu_name(),
        "logical_cores": os.cpu_count(),
        "torch_device": torch_device,
        "platform": platform.platform(),
    }
    if torch_device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(torch_device))
    return info


def _stats(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1000.0
    return float(np.median(arr)), float(np.percentile(arr, 90))


def _time_interleaved(
    steps: dict[Any, Any], iters: int, warmup: int, what: str
) -> dict[Any, list[tuple[float, float, float]]]:
    """Warm every step up, then time them round-robin: iteration i of every step before iteration i + 1 of any."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    samples: dict[Any, list[tuple[float, float, float]]] = {k: [] for k in steps}
    for _ in track(range(iters), what):
        for key, step in steps.items():
            samples[key].append(step())
    return samples


def _torch_step(detector, frames: list[np.ndarray], conf: float):
    import torch

    from detkit.data.images import to_batch
    from detkit.models.postprocess import postprocess

    module, device, size = detector.module.eval(), detector.device, detector.imgsz
    cuda = device.type == "cuda"

    def step() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        batch, sizes = to_batch(frames, size)
        batch, sizes = batch.to(device), sizes.to(device)
        t1 = time.perf_counter()
        with torch.inference_mode():
            out = module(batch)
            labels, boxes, scores = postprocess(out["logits"], out["boxes"], sizes, detector.top_k)
            if cuda:
                torch.cuda.synchronize(device)
        t2 = time.perf_counter()
        labels, boxes, scores = labels.cpu().numpy(), boxes.cpu().numpy(), scores.cpu().numpy()
        keep = scores > conf
        detector.class_map.labels_to_category_ids(labels[keep])
        _ = boxes[keep]
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    return step


def _onnx_step(onnx_det, frames: list[np.ndarray], conf: float):
    from detkit.data.images import to_batch

    def step() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        batch, sizes = to_batch(frames, onnx_det.imgsz)
        batch, sizes = batch.numpy(), sizes.numpy()
        t1 = time.perf_counter()
        labels, boxes, scores, _ = onnx_det.run(batch, sizes)
        t2 = time.perf_counter()
        keep = scores > conf
        onnx_det.class_map.labels_to_category_ids(labels[keep])
        _ = boxes[keep]
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    return step


def _row(backend: str, batch: int, threads: int, precision: str, samples: list[tuple[float, float, float]]) -> BenchRow:
    pre, infer, post = (list(x) for x in zip(*samples))
    total = [a + b + c for a, b, c in samples]
    t_med, t_p90 = _stats(total)
    i_med, i_p90 = _stats(infer)
    return BenchRow(
        backend,
        batch,
        threads,
        precision,
        _stats(pre)[0],
        i_med,
        _stats(post)[0],
        t_med,
        t_p90,
        i_p90,
        batch / (t_med / 1000.0),
    )


def resolve_models(
    model: Any,
    backends: Sequence[str],
    imgsz: tuple[int, int] | None,
    device: str | None,
    workdir: Path,
    weights: Any = None,
    class_map: Any = None,
):
    """(PyTorch detector or None, path of the ONNX model or None, notes) for the requested backends."""
    from detkit.inference import TorchDetector, open_detector

    notes: list[str] = []
    detector, onnx_path = None, None
    opened = open_detector(model, weights=weights, device=device, class_map=class_map)
    if opened.backend == "onnxruntime":
        onnx_path = Path(opened.source)
        meta = opened.metadata
        if imgsz is not None and tuple(imgsz) != tuple(meta["imgsz"]):
            raise DetkitError(
                f"imgsz {imgsz[0]}×{imgsz[1]} differs from the size the ONNX graph was exported at "
                f"({meta['imgsz'][0]}×{meta['imgsz'][1]})",
                hint="leave imgsz out, or re-export at that size",
                path=onnx_path,
                params="imgsz",
            )
        imgsz = tuple(meta["imgsz"])
        if "torch" in backends:
            src = (meta.get("source") or {}).get("path")
            if not src or not Path(src).exists():
                raise DetkitError(
                    "the torch backend needs the PyTorch model, and this export's source checkpoint is not available",
                    hint="benchmark the run dir / checkpoint instead (the ONNX side is exported on the "
                    "fly), or the onnxruntime backend alone",
                    path=onnx_path,
                    params="backends",
                )
            detector = open_detector(src, device=device, class_map=opened.class_map)
    else:
        detector = opened
    if detector is not None and imgsz is not None and tuple(imgsz) != tuple(detector.imgsz):
        detector = TorchDetector(detector.module, detector.class_map, imgsz, detector.device, source=detector.source)
    if any(b in EXPORTED for b in backends) and onnx_path is None:
        from detkit.export import export_onnx

        onnx_path = workdir / "model.onnx"
        export_onnx(detector, onnx_path, imgsz=detector.imgsz, verify=False)
        notes.append(
            "the ONNX model was exported for this benchmark (fp32, opset 17, dynamic batch, parity not re-checked)"
        )
    return detector, onnx_path, notes


def check_variants(variants: Sequence[str] | None) -> list[str] | None:
    if variants is None:
        return None
    variants = list(dict.fromkeys(variants))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise DetkitError(
            f"unknown precision variant(s) {unknown or variants}",
            hint=f"choose from {', '.join(VARIANTS)}",
            params="variants",
        )
    return variants


def variant_files(
    onnx_path: Path,
    meta: dict[str, Any],
    variants: Sequence[str],
    workdir: Path,
    data: Any = None,
    calib_split: str = "calib",
    int8_options: dict[str, Any] | None = None,
) -> tuple[dict[str, tuple[Path, dict[str, Any]]], list[str]]:
    """variant -> (ONNX file, its metadata): the file itself for its own precision; fp16 and int8 derived from an
    fp32 file."""
    import json
    import shutil

    own = meta.get("precision", "fp32")
    files: dict[str, tuple[Path, dict[str, Any]]] = {}
    notes: list[str] = []
    for v in variants:
        if v == own:
            files[v] = (onnx_path, meta)
            continue
        if own != "fp32":
            raise DetkitError(
                f"the {v} variant can only be derived from an fp32 graph, and this file is {own}",
                hint="benchmark the run dir / checkpoint, or the fp32 export",
                path=onnx_path,
            )
        path = workdir / f"model_{v}.onnx"
        vmeta = json.loads(json.dumps(meta)) | {"precision": v}
        if v == "fp16":
            from detkit.export.targets.onnx import convert_fp16

            shutil.copyfile(onnx_path, path)
            convert_fp16(path)
        else:
            from detkit.export.targets.int8 import quantize_onnx

            if data is None:
                raise DetkitError(
                    "the int8 variant needs calibration images, and no dataset (data) is given",
                    hint="pass the dataset whose calibration split calibrates the INT8 ranges",
                    params="data",
                )
            report = quantize_onnx(onnx_path, path, data, calib_split, metadata=meta, **(int8_options or {}))
            vmeta["int8"] = report.to_dict()
            notes.append(
                f"int8 variant: {report.quantized_nodes} nodes quantized, "
                f"float groups: {', '.join(report.float_groups) or 'none'} "
                f"({report.method} calibration on {report.calibration['images']} images of '{calib_split}')"
            )
        files[v] = (path, vmeta)
    return files, notes


def benchmark(
    model: Any,
    backends: Sequence[str] = BACKENDS,
    batch_sizes: Sequence[int] = (1,),
    imgsz: Sequence[int] | None = None,
    threads: Sequence[int] | None = None,
    iters: int = 10,
    warmup: int = 3,
    device: str | None = None,
    conf: float = 0.5,
    seed: int = 0,
    weights: Any = None,
    class_map: Any = None,
    variants: Sequence[str] | None = None,
    data: Any = None,
    split: str | None = None,
    calib_split: str = "calib",
    int8_options: dict[str, Any] | None = None,
    calib_data: Any = None,
) -> BenchResult:
    """Latency of ``model`` (any source ``detkit.inference.open_detector`` takes: run dir, checkpoint,
    ``recipe:NAME`` + ``weights``, bare official / Hugging Face weights, a detector or ``model.onnx``) per backend,
    batch size and thread count. A PyTorch model is exported to a temporary ONNX file for the onnxruntime rows.

    ``variants`` (fp32, fp16, int8; default: the ONNX file's own precision) are the onnxruntime precisions timed.
    With ``data`` (a dataset) each variant's AP on ``split`` (default val, else test) is measured from the same
    file; the int8 variant of an fp32 model is calibrated on ``calib_split`` of ``calib_data`` (default:
    ``data``; a list of images also works with ``int8_options={"sensitivity": False}``); ``int8_options`` go to
    ``quantize_onnx``."""
    import torch

    from detkit.export.job import versions
    from detkit.inference.onnx_detector import read_model_metadata
    from detkit.inference.resolve import exported_runtime

    backends = list(dict.fromkeys(backends))
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise DetkitError(
            f"unknown backend(s) {unknown or backends}", hint=f"choose from {', '.join(BACKENDS)}", params="backends"
        )
    if iters < 1 or warmup < 3:
        raise DetkitError(
            f"need iters >= 1 and warmup >= 3 (got {iters}, {warmup})",
            hint="warm-up iterations hide one-time allocation and JIT costs",
            params=("iters", "warmup"),
        )
    if any(int(b) < 1 for b in batch_sizes):
        raise DetkitError(f"batch sizes must be >= 1, got {list(batch_sizes)}", params="batch_sizes")
    size = None
    if imgsz is not None:
        size = (int(imgsz[0]), int(imgsz[-1]))
        if size[0] % 32 or size[1] % 32 or min(size) <= 0:
            raise DetkitError(f"image size {size[0]}×{size[1]} must be positive multiples of 32", params="imgsz")
    variants = check_variants(variants)
    if variants and not any(b in EXPORTED for b in backends):
        raise DetkitError(
            "precision variants are ONNX files: they need the onnxruntime or openvino backend",
            hint="add onnxruntime to the backends",
            params="backends",
        )
    runtimes = {b: exported_runtime(b)[0] for b in backends if b in EXPORTED}  # a missing extra fails here
    calib_data = data if calib_data is None else calib_data
    if variants and "int8" in variants and calib_data is None and _onnx_precision(model) != "int8":
        raise DetkitError(
            "the int8 variant needs calibration images, and no dataset (data) is given",
            hint="pass the dataset whose calibration split calibrates the INT8 ranges",
            params="data",
        )
    thread_counts = [int(t) for t in (threads or [torch.get_num_threads()])]
    if any(t < 1 for t in thread_counts):
        raise DetkitError(f"thread counts must be >= 1, got {thread_counts}", params="threads")

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="detkit-bench-") as work:
        detector, onnx_path, notes = resolve_models(model, backends, size, device, Path(work), weights, class_map)
        size = tuple(detector.imgsz) if detector is not None else size
        onnx_meta = read_model_metadata(onnx_path) if onnx_path is not None else None
        if size is None and onnx_meta is not None:
            size = tuple(onnx_meta["imgsz"])
        files: dict[str, tuple[Path, dict[str, Any]]] = {}
        if onnx_path is not None:
            files, variant_notes = variant_files(
                onnx_path,
                onnx_meta,
                variants or [onnx_meta.get("precision", "fp32")],
                Path(work),
                calib_data,
                calib_split,
                int8_options,
            )
            notes.extend(variant_notes)
        accuracy = _variant_accuracy(files, data, split, runtimes)
        torch_device = str(detector.device) if detector is not None else "cpu"
        result = BenchResult(
            model=str(model) if not hasattr(model, "module") else type(model).__name__,
            imgsz=size,
            iters=iters,
            warmup=warmup,
            device=device_info(torch_device),
            versions=versions(),
            notes=notes,
            accuracy=accuracy,
        )
        previous_threads = torch.get_num_threads()
        try:
            for t in thread_counts:
                for b in batch_sizes:
                    frames = [rng.integers(0, 256, (*FRAME_HW, 3), dtype=np.uint8) for _ in range(int(b))]
                    steps: dict[tuple[str, str], Any] = {}
                    if "torch" in backends:
                        torch.set_num_threads(t)
                        steps[("torch", "fp32")] = _torch_step(detector, frames, conf)
                    for backend, runtime in runtimes.items():
                        for v, (path, meta) in files.items():
                            onnx_det = runtime(path, threads=t, metadata=meta)
                            steps[(backend, v)] = _onnx_step(onnx_det, frames, conf)
                            if backend == "onnxruntime":
                                result.device.setdefault("onnxruntime_providers", onnx_det.providers)
                    for (backend, precision), samples in _time_interleaved(steps, iters, warmup, f"b{b} t{t}").items():
                        row = _row(backend, int(b), t, precision, samples)
                        row.ap = accuracy.get(accuracy_key(backend, precision), {}).get("AP")
                        result.rows.append(row)
        finally:
            torch.set_num_threads(previous_threads)
    return result


def _onnx_precision(model: Any) -> str | None:
    if isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx") and Path(model).is_file():
        from detkit.export.runtime import read_model_metadata

        return read_model_metadata(model).get("precision", "fp32")
    return None


def accuracy_key(backend: str, precision: str) -> str | None:
    """Key of ``BenchResult.accuracy``: the precision for onnxruntime (``int8``), ``openvino:int8`` for OpenVINO."""
    if backend == "onnxruntime":
        return precision
    return f"{backend}:{precision}" if backend in EXPORTED else None


def _variant_accuracy(
    files: dict[str, tuple[Path, dict[str, Any]]], data: Any, split: str | None, runtimes: dict[str, type]
) -> dict[str, Any]:
    """AP of every variant file in every exported runtime on the dataset split (empty without a dataset)."""
    if data is None:
        return {}
    from detkit.data.dataset import DatasetSpec, load_dataset
    from detkit.evaluation.coco_metrics import evaluate_coco
    from detkit.evaluation.inference import predict_split
    from detkit.export.targets.int8 import default_eval_split

    spec = data if isinstance(data, DatasetSpec) else load_dataset(data)
    split = split or default_eval_split(spec)
    split_spec = spec.split(split)
    accuracy = {}
    for backend, runtime in runtimes.items():
        for v, (path, meta) in files.items():
            det = runtime(path, metadata=meta)
            m = evaluate_coco(split_spec.annotations, predict_split(det, split_spec), det.class_map)
            accuracy[accuracy_key(backend, v)] = {
                "split": split,
                **{k: m[k] for k in ("AP", "AP50", "AP75")},
                "num_images": m["num_images"],
            }
    return accuracy
