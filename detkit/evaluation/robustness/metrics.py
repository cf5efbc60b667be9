"""The robustness summary numbers, exactly as the benchmarks define them (all APs in percent, e.g. 16.4).

- COCO-O (Mao et al. 2023): mAP_O = unweighted mean of the per-domain APs;
  relative drop = (mAP_clean - mAP_O) / mAP_clean * 100;
  effective robustness ER = mAP_O - 0.45 * mAP_clean (a line through the origin with slope 0.45; ER > 0
  means more robust than the clean accuracy predicts).
- COCO-C (Michaelis et al. 2019): mPC = mean AP over corruptions and severities 1-5; rPC = mPC / P * 100
  with P the clean AP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

ER_SLOPE = 0.45  # COCO-O's baseline: mAP_O = 0.45 * mAP_COCO


def mean_ap(values: Iterable[float]) -> float:
    """Unweighted arithmetic mean (mAP_O over domains, mPC over corruption x severity cells)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        raise ValueError("cannot average an empty set of APs")
    return float(arr.mean())


def relative_drop(clean_ap: float, shifted_ap: float) -> float | None:
    """Percent of the clean AP lost under the shift; ``None`` when the clean AP is 0."""
    if clean_ap == 0:
        return None
    return float((clean_ap - shifted_ap) / clean_ap * 100.0)


def effective_robustness(map_o: float, map_clean: float) -> float:
    """COCO-O effective robustness: ``mAP_O - 0.45 * mAP_clean`` (both in percent)."""
    return float(map_o - ER_SLOPE * map_clean)


def mean_performance_under_corruption(ap: Mapping[str, Mapping[int, float]]) -> float:
    """mPC: mean of AP(c, s) over every corruption c and severity s given (severity 0 = clean excluded)."""
    return mean_ap(v for per_severity in ap.values() for s, v in per_severity.items() if int(s) != 0)


def relative_performance_under_corruption(mpc: float, clean_ap: float) -> float | None:
    """rPC in percent: ``mPC / P * 100``; ``None`` when the clean AP is 0."""
    if clean_ap == 0:
        return None
    return float(mpc / clean_ap * 100.0)
