"""COCO-O: evaluate a detector on every natural-shift domain, per-domain AP, mAP_O, relative drop, ER.

Layout (the real dataset unzips to ``ood_coco/``; its README draws ``coco-o/``; ``detkit data synth
--domains`` writes ``coco_o/``)::

    <root>/<domain>/val2017/*.jpg
    <root>/<domain>/annotations/instances_val2017.json

``root`` may be that folder or its parent. Every sub-folder holding ``annotations/instances_val2017.json`` is a
domain; the six of COCO-O are weather, painting, handmake, cartoon, tattoo and sketch. Each domain is its own
COCO evaluation (image ids may repeat across domains), and mAP_O is the unweighted mean of their APs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detkit.data.classmap import ClassMap
from detkit.data.coco import read_coco
from detkit.errors import DetkitError
from detkit.evaluation.robustness.metrics import ER_SLOPE, effective_robustness, mean_ap, relative_drop
from detkit.evaluation.robustness.scoring import Calibration, score_images
from detkit.utils.progress import track

COCO_O_DOMAINS = ("weather", "painting", "handmake", "cartoon", "tattoo", "sketch")  # paper order
ROOT_NAMES = ("ood_coco", "coco-o", "coco_o")
ANNOTATIONS = Path("annotations") / "instances_val2017.json"
IMAGES = "val2017"
COCO_O_TOTALS = {"images": 6782, "boxes": 26624}  # the full benchmark, per its README
LAYOUT_HINT = (
    "expected ROOT/<domain>/val2017/*.jpg and ROOT/<domain>/annotations/instances_val2017.json "
    f"(COCO-O domains: {', '.join(COCO_O_DOMAINS)}), with ROOT the unzipped ood_coco/ folder or its parent"
)


@dataclass(frozen=True)
class Domain:
    name: str
    images: Path
    annotations: Path


def _domains_in(folder: Path) -> list[Domain]:
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (sub / ANNOTATIONS).is_file():
            found.append(Domain(sub.name, sub / IMAGES, sub / ANNOTATIONS))
    return found


def find_domains(root: str | Path) -> list[Domain]:
    """Every domain under ``root`` (or under its ``ood_coco`` / ``coco-o`` / ``coco_o`` child), COCO-O's six
    first in the paper's order, then any others by name."""
    root = Path(root)
    if not root.is_dir():
        raise DetkitError("COCO-O root is not a folder", hint=LAYOUT_HINT, path=root)
    domains = _domains_in(root)
    if not domains:
        for name in ROOT_NAMES:
            if (root / name).is_dir():
                domains = _domains_in(root / name)
                if domains:
                    break
    if not domains:
        raise DetkitError("no COCO-O domains found", hint=LAYOUT_HINT, path=root)
    for d in domains:
        if not d.images.is_dir():
            raise DetkitError(
                f"domain '{d.name}' has annotations but no {IMAGES}/ image folder",
                hint=LAYOUT_HINT,
                path=d.images.parent,
            )
    rank = {name: i for i, name in enumerate(COCO_O_DOMAINS)}
    return sorted(domains, key=lambda d: (rank.get(d.name, len(rank)), d.name))


def _check_categories(domain: Domain, category_ids: set[int], class_map: ClassMap) -> None:
    unknown = sorted(category_ids - set(class_map.category_ids))
    if unknown:
        shown = ", ".join(map(str, unknown[:8])) + (" ..." if len(unknown) > 8 else "")
        raise DetkitError(
            f"domain '{domain.name}' uses category ids {shown} that the model's class map does not have "
            f"({class_map.describe()})",
            hint=(
                "COCO-O needs a model trained with the same category ids "
                "(COCO's original ids 1..90 for the real benchmark)"
            ),
            path=domain.annotations,
        )


def evaluate_coco_o(
    detector: Any,
    root: str | Path,
    class_map: ClassMap,
    clean_ap: float | None,
    batch_size: int = 8,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """Score ``detector`` on every domain under ``root``; ``clean_ap`` is the clean AP in percent; with
    ``calibration`` each domain also gets its calibration errors (see :mod:`.calibration`).

    Returns the ``coco_o`` part of ``robustness.json``: per-domain AP / AP50 / counts / relative drop, mAP_O,
    the relative drop and effective robustness (``None`` without a clean AP), and the image/box totals.
    """
    domains = find_domains(root)
    per_domain: dict[str, dict[str, Any]] = {}
    for domain in track(domains, "COCO-O"):
        coco = read_coco(domain.annotations)
        crowd = sum(1 for a in coco.annotations if a.get("iscrowd", 0))
        ids = {int(c["id"]) for c in coco.categories} | {int(a["category_id"]) for a in coco.annotations}
        _check_categories(domain, ids, class_map)
        scores = score_images(
            detector, coco, domain.images, class_map, batch_size, source=domain.annotations, calibration=calibration
        )
        per_domain[domain.name] = {
            "AP": scores["AP"],
            "AP50": scores["AP50"],
            "relative_drop": relative_drop(clean_ap, scores["AP"]) if clean_ap is not None else None,
            "images": len(coco.images),
            "boxes": len(coco.annotations),
            "crowd_boxes": crowd,
            "detections": scores["num_detections"],
        }
        if calibration is not None:
            per_domain[domain.name]["calibration"] = scores["calibration"]
    map_o = mean_ap(d["AP"] for d in per_domain.values())
    totals = {
        "images": sum(d["images"] for d in per_domain.values()),
        "boxes": sum(d["boxes"] for d in per_domain.values()),
    }
    found = list(per_domain)
    return {
        "root": str(Path(root)),
        "domains": per_domain,
        "mAP_O": map_o,
        "clean_AP": clean_ap,
        "relative_drop": relative_drop(clean_ap, map_o) if clean_ap is not None else None,
        "effective_robustness": effective_robustness(map_o, clean_ap) if clean_ap is not None else None,
        "er_slope": ER_SLOPE,
        "missing_coco_o_domains": [d for d in COCO_O_DOMAINS if d not in found],
        "totals": totals,
        "matches_coco_o_totals": totals == COCO_O_TOTALS,
    }
