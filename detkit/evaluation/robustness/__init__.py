"""Robustness suites: COCO-O (natural shift: per-domain AP, mAP_O, relative drop, effective robustness) and
COCO-C (15 synthetic corruptions x 5 severities rendered once into a cache: mPC, rPC).

:func:`run_robustness` returns the content of ``robustness.json`` and writes the plots;
:func:`robustness_markdown` renders the ``report.md`` section. All APs are in percent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detkit.data.coco import CocoData, read_coco
from detkit.data.dataset import DatasetSpec, SplitSpec, load_dataset
from detkit.errors import DetkitError
from detkit.evaluation.robustness.coco_c import default_cache_dir, evaluate_coco_c
from detkit.evaluation.robustness.coco_o import COCO_O_DOMAINS, evaluate_coco_o, find_domains
from detkit.evaluation.robustness.corruptions import (
    BENCHMARK,
    CORRUPTIONS_VERSION,
    DEVIATIONS,
    SEVERITIES,
    corrupt,
    resolve_corruptions,
    resolve_severities,
)
from detkit.evaluation.robustness.metrics import (
    ER_SLOPE,
    effective_robustness,
    mean_performance_under_corruption,
    relative_drop,
    relative_performance_under_corruption,
)
from detkit.evaluation.robustness.report import robustness_markdown

__all__ = [
    "BENCHMARK",
    "COCO_O_DOMAINS",
    "ER_SLOPE",
    "SEVERITIES",
    "corrupt",
    "effective_robustness",
    "evaluate_coco_c",
    "evaluate_coco_o",
    "find_domains",
    "mean_performance_under_corruption",
    "relative_drop",
    "relative_performance_under_corruption",
    "resolve_corruptions",
    "resolve_severities",
    "robustness_markdown",
    "run_robustness",
]

PLOT_COCO_O = "plots/robustness_coco_o.png"
PLOT_COCO_C = "plots/robustness_coco_c.png"
PLOT_CALIBRATION = "plots/robustness_calibration.png"


def _split_of(
    dataset_or_split: DatasetSpec | SplitSpec | str | Path | tuple, split: str
) -> tuple[CocoData, Path, Path | str, DatasetSpec | None]:
    if isinstance(dataset_or_split, (str, Path)):
        dataset_or_split = load_dataset(dataset_or_split)
    if isinstance(dataset_or_split, DatasetSpec):
        spec = dataset_or_split.split(split)
        return read_coco(spec.annotations), spec.images, spec.annotations, dataset_or_split
    if isinstance(dataset_or_split, SplitSpec):
        return read_coco(dataset_or_split.annotations), dataset_or_split.images, dataset_or_split.annotations, None
    coco, images = dataset_or_split
    if isinstance(coco, CocoData):
        return coco, Path(images), "annotations", None
    return read_coco(coco), Path(images), coco, None


def run_robustness(
    detector: Any,
    clean_ap: float | None,
    dataset_or_split: DatasetSpec | SplitSpec | str | Path | tuple | None,
    coco_o_root: str | Path | None = None,
    corruptions: str | Sequence[str] | None = None,
    severities: str | Sequence[int] | None = None,
    cache_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 8,
    seed: int = 0,
    split: str = "val",
    workers: int | None = None,
    calibration: bool = False,
    calibrator: Any = None,
    clean_dets: Any = None,
) -> dict[str, Any]:
    """Run COCO-O and/or COCO-C for ``detector`` (anything with ``.predict_table`` and ``.class_map``).

    - ``clean_ap``: the detector's clean AP on the split as :func:`~detkit.evaluation.coco_metrics.evaluate_coco`
      returns it (a fraction in [0, 1]); ``None`` leaves the relative numbers (drop, ER, rPC) out.
    - ``dataset_or_split``: a ``DatasetSpec`` / ``dataset.yaml`` path (its ``split`` is used), a ``SplitSpec``
      or a ``(coco, images_dir)`` pair: the images COCO-C corrupts.
    - ``coco_o_root``: a COCO-O layout folder; ``None`` skips COCO-O.
    - ``corruptions``: names or groups (noise, blur, weather, digital, benchmark); ``None`` = all 15;
      ``"none"`` or an empty list (or ``dataset_or_split=None``) skips COCO-C. ``severities``: subset of 1-5.
    - ``cache_dir``: where corrupted images are cached (default ``~/.cache/detkit/coco_c``).
    - ``out_dir``: plots go to ``out_dir/plots/``; nothing is written there without it.
    - ``calibration``: also D-ECE and LaECE_0 of every domain and corruption, raw and, with ``calibrator`` (a
      loaded calibrator, applied unchanged everywhere), calibrated; ``clean_dets`` (the raw detections of the
      clean split) adds the clean row. See :mod:`detkit.evaluation.robustness.calibration`.

    Returns the content of ``robustness.json`` (APs in percent).
    """
    if clean_ap is not None and not 0.0 <= float(clean_ap) <= 1.0:
        raise DetkitError(f"clean AP must be a fraction in [0, 1] as evaluate_coco returns it, got {clean_ap}")
    clean_pct = None if clean_ap is None else 100.0 * float(clean_ap)
    class_map = detector.class_map
    skip_c = dataset_or_split is None or (
        not isinstance(corruptions, str) and corruptions is not None and len(corruptions) == 0
    )
    names = [] if skip_c else resolve_corruptions(corruptions)
    levels = resolve_severities(severities)
    if coco_o_root is None and not names:
        raise DetkitError("nothing to run: give a COCO-O root and/or select COCO-C corruptions")

    result: dict[str, Any] = {
        "units": "percent (COCO AP@[.5:.95] x 100)",
        "clean_AP": clean_pct,
        "coco_o": None,
        "coco_c": None,
        "settings": {
            "seed": seed,
            "batch_size": batch_size,
            "corruptions_version": CORRUPTIONS_VERSION,
            "corruption_definitions": "imagecorruptions 1.1 definitions and severity tables, re-implemented",
            "deviations_from_imagecorruptions": dict(DEVIATIONS),
            "cache_dir": str(Path(cache_dir) if cache_dir is not None else default_cache_dir()),
            "er_slope": ER_SLOPE,
        },
        "plots": {},
    }
    measure = None
    if calibration or calibrator is not None:
        from detkit.evaluation.robustness.calibration import SETTINGS, shift_calibration

        def measure(dets: Any, coco: CocoData) -> dict[str, Any]:
            return shift_calibration(dets, coco, class_map, calibrator)

        result["calibration"] = {"settings": dict(SETTINGS), "calibrator": calibrator is not None, "clean": None}
    clean_row = measure is not None and clean_dets is not None and dataset_or_split is not None
    if names or clean_row:  # check the split before any inference
        coco, images_dir, source, dataset = _split_of(dataset_or_split, split)
        if dataset is not None:
            class_map.check_same(
                dataset.class_map,
                "the model",
                f"dataset {dataset.path}",
                hint="evaluate on a dataset with the model's classes",
            )
    if clean_row:
        result["calibration"]["clean"] = measure(clean_dets, coco)
    if coco_o_root is not None:
        result["coco_o"] = evaluate_coco_o(
            detector, coco_o_root, class_map, clean_pct, batch_size=batch_size, calibration=measure
        )
    if names:
        result["coco_c"] = evaluate_coco_c(
            detector,
            coco,
            images_dir,
            class_map,
            clean_pct,
            corruptions=names,
            severities=levels,
            source=source,
            cache_dir=cache_dir,
            batch_size=batch_size,
            seed=seed,
            workers=workers,
            calibration=measure,
        )
    if out_dir is not None:
        from detkit.evaluation.robustness.plots import plot_coco_c, plot_coco_o

        out = Path(out_dir)
        if result["coco_o"]:
            plot_coco_o(result["coco_o"], out / PLOT_COCO_O)
            result["plots"]["coco_o"] = PLOT_COCO_O
        if result["coco_c"]:
            plot_coco_c(result["coco_c"], out / PLOT_COCO_C)
            result["plots"]["coco_c"] = PLOT_COCO_C
        if measure is not None:
            from detkit.evaluation.robustness.plots import plot_calibration_shift

            if plot_calibration_shift(result, out / PLOT_CALIBRATION) is not None:
                result["plots"]["calibration"] = PLOT_CALIBRATION
    return result
