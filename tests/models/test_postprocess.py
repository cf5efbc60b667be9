"""The post-processor against a hand-computed case, and pre-processing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from detkit.data.images import load_image, resize_image, to_batch
from detkit.errors import DetkitError
from detkit.models.postprocess import postprocess


def _logit(p):
    return math.log(p / (1 - p))


def test_postprocess_hand_computed():
    # 2 queries × 3 classes; query 1 wins twice (classes 2 and 0)
    logits = torch.tensor([[[_logit(0.1), _logit(0.6), _logit(0.05)], [_logit(0.7), _logit(0.2), _logit(0.9)]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.5]]])
    sizes = torch.tensor([[200, 100]])  # (w, h)
    labels, xyxy, scores = postprocess(logits, boxes, sizes, top_k=4)
    assert labels.tolist() == [[2, 0, 1, 1]]
    torch.testing.assert_close(scores, torch.tensor([[0.9, 0.7, 0.6, 0.2]]))
    q1 = [0.0, 50.0, 100.0, 100.0]  # cx .25·200 ± .5·200/2, cy .75·100 ± .5·100/2
    q0 = [80.0, 30.0, 120.0, 70.0]
    torch.testing.assert_close(xyxy, torch.tensor([[q1, q1, q0, q1]]))


def test_postprocess_top_k_capped_by_pairs_and_batch_sizes():
    logits = torch.randn(3, 4, 2)
    labels, boxes, scores = postprocess(logits, torch.rand(3, 4, 4), torch.tensor([[10, 20], [30, 40], [50, 60]]))
    assert labels.shape == (3, 8) and boxes.shape == (3, 8, 4)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    assert labels.dtype == torch.int64 and labels.max() <= 1


def test_preprocess_stretch_and_batch(tmp_path):
    import cv2

    img = np.zeros((50, 80, 3), np.uint8)
    img[:, :40, 0] = 255  # left half red (RGB)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), img[:, :, ::-1])
    loaded = load_image(path)
    assert loaded.shape == (50, 80, 3) and loaded[0, 0].tolist() == [255, 0, 0]
    assert resize_image(loaded, (32, 64)).shape == (32, 64, 3)
    batch, sizes = to_batch([loaded, np.zeros((10, 20, 3), np.uint8)], (32, 64))
    assert batch.dtype == torch.uint8 and batch.shape == (2, 3, 32, 64)
    assert sizes.tolist() == [[80, 50], [20, 10]]


def test_preprocess_bad_inputs(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DetkitError, match="cannot decode image"):
        load_image(bad)
    with pytest.raises(DetkitError, match="image not found"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(DetkitError, match="expected a uint8 HxWx3"):
        to_batch([np.zeros((10, 10), np.float32)], (32, 32))
