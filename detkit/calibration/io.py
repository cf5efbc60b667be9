"""``calibrator.json``: a fitted calibrator as plain numbers a person can read, written atomically.

Layout (format version 2; version 1 files, whose isotonic maps could be flat, are still read)::

    {"detkit_calibrator": 2,
     "method": "platt" | "isotonic" | "temperature", "classwise": true, "target": "iou" | "tp",
     "iou_threshold": 0.0,
     "class_map": {"names": [...], "category_ids": [...]},
     "map": "<the formula applied and how it was made strictly increasing>",
     "parameters": {"<class name>": {"a": .., "b": ..} | {"T": ..} | {"x": [..], "y": [..]}}   # or {"*": ...}
     "fallback": {"<class name>": "identity: <reason>"},
     "pre_thresholds": {"rule": .., "iou_threshold": .., "values": {"<class name>": float | null}} | null,
     "thresholds": {... same, on calibrated scores ...} | null,
     "fit": {"split": "calib", ...},
     "evaluation": {"split": "test", "before": {...}, "after": {...}} | null}

A threshold of null keeps every detection of its class.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from detkit.calibration.calibrators import METHODS, TARGETS, Calibrator
from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.utils.atomic import atomic_write_json
from detkit.utils.files import read_json

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MAP_FORMULA = {
    "platt": "p' = sigmoid(a * logit(clip(p, eps, 1 - eps)) + b) with a > 0: strictly increasing on [0, 1], "
    "so detections of a class keep their order",
    "temperature": "p' = sigmoid(logit(clip(p, eps, 1 - eps)) / T) with T > 0: strictly increasing on [0, 1]; "
    "T minimises the binned calibration error of the target on the fit split, T = 1 unless that "
    "error goes down",
    "isotonic": "p' = linear interpolation of the (x, y) knots; the knots are scikit-learn's isotonic fit extended "
    "to (0, 0) below its first knot and to (1, 1) above its last, blended with the identity "
    "(y = 0.999 * y_iso + 0.001 * x) so that no segment is flat: strictly increasing on [0, 1], "
    "so detections of a class keep their order",
}
LEGACY_NOTE = (
    "calibrator file format 1: its isotonic maps may be flat below the first knot and between knots, "
    "which ties and reorders detections (lower AP); re-fit it with `detkit calibrate`"
)


def _thresholds_json(
    values: np.ndarray | None, rule: dict[str, Any] | None, class_map: ClassMap
) -> dict[str, Any] | None:
    if values is None:
        return None
    out = dict(rule or {})
    out["values"] = {n: (None if not math.isfinite(v) else float(v)) for n, v in zip(class_map.names, values.tolist())}
    return out


def calibrator_to_dict(cal: Calibrator) -> dict[str, Any]:
    names = cal.class_map.names if cal.classwise else ("*",)
    rules = cal.threshold_rule or {}
    return {
        "detkit_calibrator": FORMAT_VERSION,
        "method": cal.method,
        "classwise": cal.classwise,
        "target": cal.target,
        "iou_threshold": cal.iou_threshold,
        "class_map": cal.class_map.to_dict(),
        "map": MAP_FORMULA[cal.method],
        "parameters": {n: p for n, p in zip(names, cal.params)},
        "fallback": cal.fallback,
        "pre_thresholds": _thresholds_json(cal.pre_thresholds, rules.get("pre"), cal.class_map),
        "thresholds": _thresholds_json(cal.thresholds, rules.get("post"), cal.class_map),
        "fit": cal.fit_info,
        "evaluation": cal.evaluation,
    }


def save_calibrator(cal: Calibrator, path: str | Path) -> Path:
    """Write ``calibrator.json`` atomically (a crash never leaves a half-written file)."""
    return atomic_write_json(path, calibrator_to_dict(cal))


class _Corrupt(Exception):
    pass


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise _Corrupt(what)


def _finite(v: Any, what: str) -> float:
    _require(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)),
        f"{what} must be a finite number",
    )
    return float(v)


def _check_params(method: str, p: Any, where: str, strict: bool = True) -> dict[str, Any]:
    _require(isinstance(p, dict), f"{where} must be an object")
    if method == "platt":
        a, b = _finite(p.get("a"), f"{where}.a"), _finite(p.get("b"), f"{where}.b")
        _require(a > 0 if strict else a >= 0, f"{where}.a must be > 0 (a strictly increasing map)")
        return {"a": a, "b": b}
    if method == "temperature":
        t = _finite(p.get("T"), f"{where}.T")
        _require(t > 0, f"{where}.T must be > 0")
        return {"T": t}
    x, y = p.get("x"), p.get("y")
    _require(
        isinstance(x, list) and isinstance(y, list) and len(x) == len(y) and len(x) >= 1,
        f"{where} needs 'x' and 'y' lists of the same, non-zero length",
    )
    xs = [_finite(v, f"{where}.x") for v in x]
    ys = [_finite(v, f"{where}.y") for v in y]
    _require(all(b >= a for a, b in zip(xs, xs[1:])), f"{where}.x must be sorted")
    _require(all(b >= a for a, b in zip(ys, ys[1:])), f"{where}.y must be non-decreasing (a monotone map)")
    _require(all(0.0 <= v <= 1.0 for v in ys), f"{where}.y must lie in [0, 1]")
    if strict:
        _require(
            all(b > a for a, b in zip(xs, xs[1:])) and all(b > a for a, b in zip(ys, ys[1:])),
            f"{where}: x and y must be strictly increasing (a map that never ties detections)",
        )
        _require(xs[0] == 0.0 and xs[-1] == 1.0, f"{where}.x must run from 0 to 1 (a map of all of [0, 1])")
    return {"x": xs, "y": ys}


def _read_thresholds(raw: Any, class_map: ClassMap, key: str) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    if raw is None:
        return None, None
    _require(isinstance(raw, dict) and isinstance(raw.get("values"), dict), f"'{key}' must be an object with 'values'")
    values = raw["values"]
    _require(set(values) == set(class_map.names), f"'{key}.values' must name every class of the class map")
    arr = np.asarray(
        [np.nan if values[n] is None else _finite(values[n], f"{key}.values.{n}") for n in class_map.names]
    )
    rule = {k: v for k, v in raw.items() if k != "values"}
    return arr, rule


def calibrator_from_dict(raw: Any) -> Calibrator:
    _require(isinstance(raw, dict), "the file must hold a JSON object")
    version = raw.get("detkit_calibrator")
    _require(
        version in READABLE_VERSIONS,
        f"'detkit_calibrator' must be one of {READABLE_VERSIONS} (not a detkit calibrator, or another version)",
    )
    method = raw.get("method")
    _require(method in METHODS, f"'method' must be one of {', '.join(METHODS)}")
    _require(raw.get("target") in TARGETS, "'target' must be 'iou' or 'tp'")
    _require(isinstance(raw.get("classwise"), bool), "'classwise' must be true or false")
    iou = _finite(raw.get("iou_threshold"), "'iou_threshold'")
    cm_raw = raw.get("class_map")
    _require(
        isinstance(cm_raw, dict)
        and isinstance(cm_raw.get("names"), list)
        and isinstance(cm_raw.get("category_ids"), list),
        "'class_map' must have 'names' and 'category_ids' lists",
    )
    try:
        class_map = ClassMap.from_dict(cm_raw)
    except (DetkitError, TypeError, ValueError) as e:
        raise _Corrupt(f"invalid 'class_map': {e}") from None
    params_raw = raw.get("parameters")
    _require(isinstance(params_raw, dict), "'parameters' must be an object")
    names = class_map.names if raw["classwise"] else ("*",)
    missing = [n for n in names if n not in params_raw]
    _require(not missing, f"'parameters' has no entry for {missing[:3]}")
    params = [_check_params(method, params_raw[n], f"parameters.{n}", strict=version >= 2) for n in names]
    fallback = raw.get("fallback") or {}
    _require(isinstance(fallback, dict), "'fallback' must be an object")
    pre, pre_rule = _read_thresholds(raw.get("pre_thresholds"), class_map, "pre_thresholds")
    post, post_rule = _read_thresholds(raw.get("thresholds"), class_map, "thresholds")
    rules = {k: v for k, v in (("pre", pre_rule), ("post", post_rule)) if v is not None}
    cal = Calibrator(
        method,
        raw["classwise"],
        raw["target"],
        iou,
        class_map,
        params,
        dict(fallback),
        pre,
        post,
        rules,
        raw.get("fit") or {},
        raw.get("evaluation"),
    )
    cal.format_version = int(version)
    return cal


def load_calibrator(path: str | Path, class_map: ClassMap | None = None) -> Calibrator:
    """Read and check ``calibrator.json``; with ``class_map``, refuse a calibrator fitted for another one."""
    path = Path(path)
    raw = read_json(path, what="calibrator file")
    try:
        cal = calibrator_from_dict(raw)
    except _Corrupt as e:
        raise DetkitError(
            f"corrupted calibrator file: {e}", hint="re-create it with `detkit calibrate`", path=path
        ) from None
    except DetkitError as e:
        raise DetkitError(
            f"corrupted calibrator file: {e.message}", hint="re-create it with `detkit calibrate`", path=path
        ) from None
    if class_map is not None and cal.class_map != class_map:
        raise DetkitError(
            f"calibrator was fitted for {cal.class_map.describe()} but the model/dataset has {class_map.describe()}",
            hint="fit a calibrator for this model with `detkit calibrate`",
            path=path,
        )
    return cal
