"""The public Python API: :func:`load_model` and :class:`Detector`.

>>> import detkit
>>> det = detkit.load_model("runs/train/exp")            # or a checkpoint, or "recipe:rtdetr-r18", weights=...
>>> dets = det.predict(["a.jpg", "b.jpg"], conf=0.3)      # list of Detections (xyxy pixels, scores, labels, ids)

Inference is pre-processing (:mod:`detkit.models.preprocess`) → module → post-processing
(:mod:`detkit.models.postprocess`): the same code the evaluation and the ONNX export use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.evaluation.detections import DetectionTable
from detkit.models.postprocess import COCO_TOP_K, postprocess
from detkit.models.preprocess import as_image, to_batch

ImageLike = str | Path | np.ndarray
DEFAULT_IMGSZ = 640

# COCO's 80 classes in model order (rtdetr.md §8.2): what official and Hugging Face weights predict
COCO80_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)
COCO80_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)


def coco80_class_map() -> ClassMap:
    return ClassMap(COCO80_NAMES, COCO80_IDS)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` → CUDA when available, else CPU; otherwise the named device (checked)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DetkitError(f"unknown device '{device}'", hint="use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DetkitError(f"device '{device}' requested but CUDA is not available", hint="use --device cpu")
    return dev


def _size_hw(imgsz: int | Sequence[int]) -> tuple[int, int]:
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(int(v) for v in imgsz)
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise DetkitError(f"image size must be positive multiples of 32, got {h}×{w}")
    return h, w


@dataclass
class Detections:
    """Detections of one image, sorted by descending score."""

    boxes: np.ndarray  # float32 [n, 4] xyxy, pixels of the original image
    scores: np.ndarray  # float32 [n]
    labels: np.ndarray  # int64 [n], model label index (class_map.names[label])
    category_ids: np.ndarray  # int64 [n], the dataset's original category ids

    def __len__(self) -> int:
        return len(self.scores)


class Detector:
    """Wraps any RT-DETR module (a loaded model or training's EMA model) with pre- and post-processing."""

    def __init__(
        self,
        module: nn.Module,
        class_map: ClassMap,
        imgsz: int | Sequence[int] = DEFAULT_IMGSZ,
        device: str | torch.device | None = None,
        recipe: Any = None,
        batch_size: int = 8,
        top_k: int = COCO_TOP_K,
    ):
        self.module = module
        self.class_map = class_map
        self.imgsz = _size_hw(imgsz)
        self.device = resolve_device(device) if device is not None else next(module.parameters()).device
        self.recipe = recipe
        self.batch_size = batch_size
        self.top_k = top_k
        self.module.to(self.device)

    def __repr__(self) -> str:
        return (f"Detector({type(self.module).__name__}, {len(self.class_map)} classes, imgsz={self.imgsz}, "
                f"device={self.device})")

    @torch.inference_mode()
    def _run(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch, sizes = to_batch(arrays, self.imgsz)
        out = self.module(batch.to(self.device, non_blocking=True))
        labels, boxes, scores = postprocess(out["logits"], out["boxes"], sizes.to(self.device), self.top_k)
        return labels.cpu().numpy(), boxes.float().cpu().numpy(), scores.float().cpu().numpy()

    def predict(self, images: ImageLike | Sequence[ImageLike], conf: float = 0.0) -> list[Detections]:
        """Detections for each image (paths or uint8 HWC RGB arrays); scores below ``conf`` are dropped."""
        if isinstance(images, (str, Path, np.ndarray)):
            images = [images]
        items = list(images)
        results: list[Detections] = []
        was_training = self.module.training
        self.module.eval()
        try:
            for start in range(0, len(items), self.batch_size):
                arrays = [as_image(x, start + i) for i, x in enumerate(items[start : start + self.batch_size])]
                labels, boxes, scores = self._run(arrays)
                for lab, box, sc in zip(labels, boxes, scores):
                    keep = sc >= conf
                    lab = lab[keep].astype(np.int64)
                    results.append(Detections(box[keep], sc[keep], lab, self.class_map.labels_to_category_ids(lab)))
        finally:
            self.module.train(was_training)
        return results

    def predict_table(
        self, images: Sequence[ImageLike], image_ids: Sequence[int], conf: float = 0.0
    ) -> DetectionTable:
        """All detections of ``images`` as one table (COCO xywh boxes, original category ids)."""
        if len(images) != len(image_ids):
            raise DetkitError(f"{len(images)} images but {len(image_ids)} image ids")
        dets = self.predict(images, conf=conf)
        return DetectionTable.concat(
            DetectionTable.from_xyxy(int(i), d.boxes, d.scores.astype(np.float64), d.category_ids)
            for i, d in zip(image_ids, dets)
        )


# -- loading -----------------------------------------------------------------------------------------------------
def find_run_checkpoint(run_dir: Path) -> Path:
    """``checkpoints/best.pt`` of a run directory, else ``checkpoints/last.pt``."""
    for name in ("best.pt", "last.pt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    raise DetkitError("run directory has no checkpoints/best.pt or checkpoints/last.pt", path=run_dir,
                      hint="pass a run directory written by `detkit train`, or a checkpoint file")


def _recipe_imgsz(recipe_dict: Mapping[str, Any]) -> int:
    train = recipe_dict.get("train") if isinstance(recipe_dict, Mapping) else None
    return int(train.get("imgsz", DEFAULT_IMGSZ)) if isinstance(train, Mapping) else DEFAULT_IMGSZ


def _class_count(state: Mapping[str, torch.Tensor]) -> int:
    from detkit.models.convert_weights import to_detkit

    head = to_detkit(state).state_dict.get("decoder.enc_score_head.weight")
    if head is None:
        raise DetkitError("weights have no class head (decoder.enc_score_head); is this an RT-DETR model?")
    return int(head.shape[0])


def _default_class_map(num_classes: int) -> ClassMap:
    """COCO's map for 80-class weights, else generic names with ids 0..K−1 (pass class_map to name them)."""
    if num_classes == 80:
        return coco80_class_map()
    return ClassMap.from_names([f"class_{i}" for i in range(num_classes)], first_id=0)


def _is_recipe_source(src: str) -> bool:
    return src.startswith("recipe:") or Path(src).suffix in (".yaml", ".yml")


def load_model(
    source: str | Path,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    reinit_head: bool = False,
    class_map: ClassMap | None = None,
    imgsz: int | Sequence[int] | None = None,
) -> Detector:
    """Load a detector from a run directory, a detkit checkpoint, or ``recipe:NAME`` / a recipe YAML.

    With a recipe, ``weights`` may be a detkit checkpoint, an official RT-DETR v1/v2 ``.pth`` or Hugging Face
    ``RTDetrForObjectDetection`` weights (``.safetensors`` or ``.pth``); without weights the model is randomly
    initialised. ``class_map`` sets the classes to predict: when it differs from the weights' classes the class
    heads are re-initialised only if ``reinit_head`` is set, otherwise a clear error names both.
    Foreign weights without a class map are taken as COCO's 80 classes when they have 80 outputs.
    """
    from detkit.config.recipe import resolve_recipe
    from detkit.models.builder import build_model
    from detkit.models.checkpoint import load_checkpoint, read_weights
    from detkit.models.convert_weights import load_into

    src = str(source)
    if src.lower().endswith(".onnx"):  # exported models run on onnxruntime behind the same interface (detkit.export)
        from detkit.export.runtime import load_onnx_detector

        return load_onnx_detector(src, weights=weights, device=device, class_map=class_map, imgsz=imgsz)
    weights_map: ClassMap | None = None
    if _is_recipe_source(src):
        recipe = resolve_recipe(src)
        state, origin = None, src
        if weights is not None:
            origin = str(weights)
            state, weights_map = read_weights(weights)
    else:
        if weights is not None:
            raise DetkitError("weights= goes with recipe:NAME or a recipe file, not with a run or checkpoint",
                              hint=f"load_model('recipe:rtdetr-r18', weights='{weights}')")
        path = Path(src)
        if path.is_dir():
            path = find_run_checkpoint(path)
        if path.suffix == ".onnx":
            raise DetkitError("this is an exported ONNX model; load_model reads PyTorch checkpoints", path=path,
                              hint="use the ONNX runtime detector from detkit.export")
        ckpt = load_checkpoint(path)
        recipe = resolve_recipe(ckpt.recipe)
        state, weights_map, origin = ckpt.weights, ckpt.class_map, str(path)

    mismatch_message = None
    if class_map is None:
        if weights_map is not None:
            class_map = weights_map
        elif state is not None:
            class_map = _default_class_map(_class_count(state))
        else:
            class_map = coco80_class_map()
    elif weights_map is not None and weights_map != class_map:
        if not reinit_head:
            weights_map.check_same(class_map, f"weights {origin}", "the requested class map",
                                   hint="pass reinit_head=True (--reinit-head) to re-initialise the class heads")
        mismatch_message = f"{origin}: class map differs"

    module = build_model(recipe.model, len(class_map))
    if state is not None:
        load_into(module, state, reinit_head=reinit_head, source=origin, class_mismatch_message=mismatch_message)
    module.eval()
    size = imgsz if imgsz is not None else _recipe_imgsz(recipe.model_dump())
    return Detector(module, class_map, size, device=resolve_device(device), recipe=recipe)
