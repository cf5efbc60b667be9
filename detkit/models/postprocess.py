"""The one post-processor (eval, predict and the exported ONNX graph all use it).

Scores are the sigmoid of every (query, class) pair; the top-k pairs over queries × classes are kept (one query
may appear with several labels; no NMS, no threshold). Boxes go from normalised cxcywh to xyxy pixels of the
original image, which is exact because pre-processing is a plain stretch-resize.
"""

from __future__ import annotations

import numpy as np
import torch

from detkit.data.classmap import ClassMap
from detkit.models.layers import box_cxcywh_to_xyxy

COCO_TOP_K = 300


def postprocess(
    logits: torch.Tensor, boxes: torch.Tensor, orig_sizes_wh: torch.Tensor, top_k: int = COCO_TOP_K
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``logits [B,Q,K]``, ``boxes [B,Q,4]`` (cxcywh in [0, 1]), ``orig_sizes_wh [B,2]`` (width, height) →
    ``(labels int64 [B,k], boxes_xyxy float [B,k,4] in original pixels, scores float [B,k])``, k = min(top_k, Q·K),
    sorted by descending score.
    """
    num_classes = logits.shape[-1]
    k = min(top_k, logits.shape[1] * num_classes)
    scores, index = logits.sigmoid().flatten(1).topk(k, dim=1)
    query = torch.div(index, num_classes, rounding_mode="floor")
    labels = index - query * num_classes  # index mod K without the `%` operator (old TensorRT parsers)
    scale = orig_sizes_wh.to(boxes.dtype).repeat(1, 2)[:, None, :]
    xyxy = box_cxcywh_to_xyxy(boxes) * scale
    picked = xyxy.gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
    return labels, picked, scores


def labels_to_category_ids(labels: np.ndarray, class_map: ClassMap) -> np.ndarray:
    """Model label indices → the dataset's original category ids (numpy)."""
    return class_map.labels_to_category_ids(labels)
