"""The FDR pieces: weighting function, integral, distance ↔ box maps and the FGL targets (docs/dfine.md §5)."""

from __future__ import annotations

import pytest
import torch

from detkit.models.dfine.fdr import (
    distance2bbox,
    integral,
    weighting_function,
)
from detkit.models.layers import box_cxcywh_to_xyxy

UP, C = torch.tensor([0.5]), torch.tensor([4.0])


@pytest.mark.parametrize("reg_scale", [4.0, 8.0])
def test_weighting_function_shape_and_symmetry(reg_scale):
    c = torch.tensor([reg_scale])
    w = weighting_function(32, UP, c)
    ac = 0.5 * reg_scale
    assert w.shape == (33,)
    assert torch.allclose(w, -w.flip(0), atol=1e-6) and w[16] == 0
    assert torch.allclose(w[[0, 1, 31, 32]], torch.tensor([-2 * ac, -ac, ac, 2 * ac]), atol=1e-5)
    assert (w.diff() > 0).all()
    inner = w[17:32].diff()
    assert (inner.diff() > 0).all()  # steps grow geometrically away from the centre
    step = (ac + 1) ** (2 / 30)
    assert torch.allclose(w[17], torch.tensor(step - 1), atol=1e-6)
    # finest step next to 0 in box units: 0.019 for c = 4, 0.014 for c = 8
    assert abs(float(w[17]) / reg_scale - {4.0: 0.019, 8.0: 0.014}[reg_scale]) < 0.0015


def test_uniform_distributions_leave_the_box_unchanged():
    w = weighting_function(32, UP, C)
    ref = torch.tensor([[[0.4, 0.5, 0.2, 0.3]]])
    d = integral(torch.zeros(1, 1, 4 * 33), w)
    assert d.shape == (1, 1, 4) and d.abs().max() < 1e-6
    assert torch.allclose(distance2bbox(ref, d, C), ref, atol=1e-6)


def test_distance2bbox_moves_each_edge_outward_by_distance_times_size_over_c():
    ref = torch.tensor([[0.5, 0.5, 0.4, 0.2]])
    d = torch.tensor([[1.0, 0.0, 2.0, -1.0]])  # left +1, right +2, bottom −1 (units of size / c)
    xyxy = box_cxcywh_to_xyxy(distance2bbox(ref, d, C))
    assert torch.allclose(xyxy, torch.tensor([[0.3 - 0.1, 0.4, 0.7 + 0.2, 0.6 - 0.05]]), atol=1e-6)
