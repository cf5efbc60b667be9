"""The FDR bin values W(n), box ↔ edge-distance conversion and the two-bin targets (docs/dfine-losses.md §1-2)."""

from __future__ import annotations

import pytest
import torch

from detkit.models.dfine.fdr import bbox2distance, distance2bbox, distance_bins, weighting_function
from detkit.models.layers import box_cxcywh_to_xyxy

N = 32


@pytest.mark.parametrize("up,c", [(0.5, 4.0), (0.5, 8.0), (0.3, 2.0)])
def test_weighting_function_values(up, c):
    w = weighting_function(N, torch.tensor([up]), torch.tensor(c))
    ac = up * c
    step = (ac + 1) ** (2 / (N - 2))
    assert w.shape == (N + 1,)
    assert w[0].item() == pytest.approx(-2 * ac) and w[N].item() == pytest.approx(2 * ac)
    assert w[N // 2].item() == 0.0
    assert w[1].item() == pytest.approx(-ac, rel=1e-5) and w[N - 1].item() == pytest.approx(ac, rel=1e-5)
    torch.testing.assert_close(w, -w.flip(0))  # antisymmetric
    assert bool((w[1:] > w[:-1]).all())  # increasing: the bins are ordered
    for n in range(1, N // 2):
        assert w[n].item() == pytest.approx(1 - step ** (N // 2 - n), rel=1e-5, abs=1e-7)
    for n in range(N // 2 + 1, N):
        assert w[n].item() == pytest.approx(step ** (n - N // 2) - 1, rel=1e-5, abs=1e-7)


def test_weighting_function_finest_step_and_sign_of_parameters():
    w = weighting_function(N, 0.5, 4.0)
    # the bins are in units of (box size / c): next to 0 the step is about 0.019 box sizes for c = 4
    assert (w[N // 2 + 1] / 4).item() == pytest.approx(0.019, abs=5e-4)
    torch.testing.assert_close(weighting_function(N, -0.5, -4.0), w)  # only |up| and |reg_scale| count


def test_weighting_function_rejects_odd_reg_max():
    with pytest.raises(ValueError, match="reg_max"):
        weighting_function(31, 0.5, 4.0)


def test_bbox2distance_and_decode_round_trip():
    g = torch.Generator().manual_seed(0)
    ref = torch.cat([torch.rand(20, 2, generator=g) * 0.6 + 0.2, torch.rand(20, 2, generator=g) * 0.3 + 0.05], -1)
    box = torch.cat([torch.rand(20, 2, generator=g) * 0.4, torch.rand(20, 2, generator=g) * 0.4 + 0.5], -1)
    for c in (4.0, 8.0):
        d = bbox2distance(ref, box, torch.tensor([c]))
        torch.testing.assert_close(box_cxcywh_to_xyxy(distance2bbox(ref, d, torch.tensor([c]))), box, atol=1e-5, rtol=0)


def test_bbox2distance_of_the_reference_itself_is_zero_and_outward_is_positive():
    ref = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    same = torch.tensor([[0.4, 0.3, 0.6, 0.7]])
    torch.testing.assert_close(bbox2distance(ref, same, 4.0), torch.zeros(1, 4), atol=1e-6, rtol=0)
    wider = torch.tensor([[0.35, 0.3, 0.6, 0.7]])  # left edge 0.05 = a quarter box width further out
    torch.testing.assert_close(bbox2distance(ref, wider, 4.0), torch.tensor([[1.0, 0, 0, 0]]), atol=1e-5, rtol=0)


def test_distance_bins_interpolate_between_neighbours():
    w = weighting_function(N, 0.5, 4.0)
    inside = torch.tensor([w[10].item(), 0.5 * (w[20] + w[21]).item(), 0.25 * w[3].item() + 0.75 * w[4].item(), 0.0])
    left, w_left, w_right = distance_bins(inside, w)
    assert left.tolist() == [10, 20, 3, N // 2]
    torch.testing.assert_close(w_right, torch.tensor([0.0, 0.5, 0.75, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(w_left + w_right, torch.ones(4))
    # the expectation over the two bins is the distance itself
    torch.testing.assert_close(w_left * w[left] + w_right * w[left + 1], inside, atol=1e-5, rtol=0)


def test_distance_bins_outside_the_range_go_to_the_outer_bin():
    w = weighting_function(N, 0.5, 4.0)
    d = torch.tensor([[-100.0, w[0].item(), w[N].item(), 100.0]])
    left, w_left, w_right = distance_bins(d, w)
    assert left.tolist() == [[0, 0, N - 1, N - 1]]
    assert w_left.tolist() == [[1.0, 1.0, 0.0, 0.0]]
    assert w_right.tolist() == [[0.0, 0.0, 1.0, 1.0]]
