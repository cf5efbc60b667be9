"""Dataset statistics: per-class image/box counts, COCO size buckets, box size and aspect histograms, objects per
image, and PNG plots of them. Everything is computed with array code over all annotations at once.

Size buckets follow COCO's evaluator: an annotation's ``area`` (its segmentation area, or ``w * h`` when the
file has no area) is small below 32², medium below 96², large otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.classmap import ClassMap
from detkit.data.coco import CocoData, read_coco
from detkit.data.dataset import DatasetSpec, load_dataset
from detkit.errors import DetkitError
from detkit.utils.figures import new_figure, save_figure
from detkit.utils.progress import track

SMALL_AREA, MEDIUM_AREA = 32.0**2, 96.0**2
SIZE_EDGES = (0, 8, 16, 32, 64, 96, 128, 256, 512)  # sqrt(area) in pixels; the last bin is open
ASPECT_EDGES = (0.25, 0.5, 2 / 3, 1.5, 2.0, 4.0)  # w / h; open bins below and above


@dataclass
class BoxTable:
    """One row per annotation (columns as arrays) plus the images they belong to."""

    image_index: np.ndarray  # int64 [n], index into the image arrays
    label: np.ndarray  # int64 [n], model label (index into the class map)
    w: np.ndarray  # float64 [n]
    h: np.ndarray  # float64 [n]
    cx: np.ndarray  # float64 [n], box centre / image width
    cy: np.ndarray  # float64 [n]
    area: np.ndarray  # float64 [n]
    crowd: np.ndarray  # bool [n]
    n_images: int
    unknown_category: int  # annotations dropped: category not in the class map
    orphan: int  # annotations dropped: image id not in the file


def box_table(coco: CocoData, class_map: ClassMap) -> BoxTable:
    """Turn a COCO file into column arrays; annotations with unknown images or categories are counted, not used."""
    image_ids = np.asarray([int(im["id"]) for im in coco.images], dtype=np.int64)
    widths = np.asarray([float(im.get("width") or 0) for im in coco.images], dtype=np.float64)
    heights = np.asarray([float(im.get("height") or 0) for im in coco.images], dtype=np.float64)
    anns = coco.annotations
    n = len(anns)
    ann_image = np.fromiter((a["image_id"] for a in anns), dtype=np.int64, count=n)
    ann_cat = np.fromiter((a["category_id"] for a in anns), dtype=np.int64, count=n)
    bbox = coco.boxes_array()
    area = np.fromiter((float(a.get("area") or 0.0) for a in anns), dtype=np.float64, count=n)
    crowd = np.fromiter((int(a.get("iscrowd", 0)) for a in anns), dtype=np.int64, count=n).astype(bool)

    order = np.argsort(image_ids, kind="stable")
    if len(image_ids):
        pos = np.clip(np.searchsorted(image_ids[order], ann_image), 0, len(image_ids) - 1)
        ann_index = order[pos]
        known_image = image_ids[ann_index] == ann_image
    else:
        ann_index = np.zeros(n, dtype=np.int64)
        known_image = np.zeros(n, dtype=bool)
    cats = np.asarray(class_map.category_ids, dtype=np.int64)
    corder = np.argsort(cats)
    cpos = np.clip(np.searchsorted(cats[corder], ann_cat), 0, len(cats) - 1)
    known_cat = cats[corder][cpos] == ann_cat
    keep = known_image & known_cat

    img_idx = ann_index[keep]
    x, y, w, h = (bbox[keep, k] for k in range(4))
    area = np.where(area[keep] > 0, area[keep], w * h)
    iw = np.where(widths[img_idx] > 0, widths[img_idx], np.nan)
    ih = np.where(heights[img_idx] > 0, heights[img_idx], np.nan)
    return BoxTable(
        image_index=img_idx,
        label=corder[cpos][keep],
        w=w,
        h=h,
        cx=(x + w / 2) / iw,
        cy=(y + h / 2) / ih,
        area=area,
        crowd=crowd[keep],
        n_images=len(image_ids),
        unknown_category=int((known_image & ~known_cat).sum()),
        orphan=int((~known_image).sum()),
    )


def _histogram(values: np.ndarray, edges: tuple[float, ...], open_low: bool) -> dict[str, int]:
    """Counts per named bin: '[a, b)' for inner bins, '< a' / '>= b' for the open ends."""
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    names = [f"< {_num(edges[0])}"] if open_low else []
    names += [f"[{_num(a)}, {_num(b)})" for a, b in zip(edges[:-1], edges[1:])] + [f">= {_num(edges[-1])}"]
    if not open_low:
        counts = counts[1:]  # values below the first edge (0) cannot occur
    return {name: int(c) for name, c in zip(names, counts)}


def _num(v: float) -> str:
    return f"{v:g}" if float(v).is_integer() else f"{v:.2f}"


def summarise(table: BoxTable, class_map: ClassMap) -> dict[str, Any]:
    """Counts and histograms of one split (or of several pooled) as a JSON-ready dict."""
    k = len(class_map)
    n_boxes = len(table.label)
    per_image = np.bincount(table.image_index, minlength=table.n_images) if table.n_images else np.zeros(0, np.int64)
    pairs = np.unique(table.image_index * k + table.label) if n_boxes else np.zeros(0, np.int64)
    images_per_class = np.bincount(pairs % k, minlength=k)
    boxes_per_class = np.bincount(table.label, minlength=k)
    bucket = np.searchsorted(np.array([SMALL_AREA, MEDIUM_AREA]), table.area, side="right")  # 0 S, 1 M, 2 L
    size_counts = np.zeros((k, 3), dtype=np.int64)
    np.add.at(size_counts, (table.label, bucket), 1)
    crowd_per_class = np.bincount(table.label[table.crowd], minlength=k)
    side = np.sqrt(np.maximum(table.area, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = table.w / table.h

    classes = []
    for i, (name, cid) in enumerate(zip(class_map.names, class_map.category_ids)):
        sel = table.label == i
        classes.append(
            {
                "name": name,
                "category_id": cid,
                "images": int(images_per_class[i]),
                "boxes": int(boxes_per_class[i]),
                "crowd": int(crowd_per_class[i]),
                "small": int(size_counts[i, 0]),
                "medium": int(size_counts[i, 1]),
                "large": int(size_counts[i, 2]),
                "median_size": float(np.median(side[sel])) if sel.any() else None,
                "median_aspect": float(np.median(aspect[sel])) if sel.any() else None,
            }
        )
    hist_obj = np.bincount(per_image) if len(per_image) else np.zeros(1, np.int64)
    return {
        "images": int(table.n_images),
        "boxes": n_boxes,
        "empty_images": int((per_image == 0).sum()),
        "crowd_boxes": int(table.crowd.sum()),
        "boxes_per_image": {
            "mean": float(per_image.mean()) if len(per_image) else 0.0,
            "max": int(per_image.max()) if len(per_image) else 0,
            "histogram": {str(i): int(c) for i, c in enumerate(hist_obj) if c},
        },
        "sizes": {
            "small": int((bucket == 0).sum()),
            "medium": int((bucket == 1).sum()),
            "large": int((bucket == 2).sum()),
        },
        "size_histogram": _histogram(side, SIZE_EDGES, open_low=False),
        "aspect_histogram": _histogram(aspect[np.isfinite(aspect)], ASPECT_EDGES, open_low=True),
        "classes": classes,
        "skipped_annotations": {"unknown_category": table.unknown_category, "unknown_image": table.orphan},
    }


def _concat(tables: list[BoxTable]) -> BoxTable:
    offsets = np.cumsum([0] + [t.n_images for t in tables[:-1]])
    return BoxTable(
        image_index=np.concatenate([t.image_index + o for t, o in zip(tables, offsets)]),
        label=np.concatenate([t.label for t in tables]),
        w=np.concatenate([t.w for t in tables]),
        h=np.concatenate([t.h for t in tables]),
        cx=np.concatenate([t.cx for t in tables]),
        cy=np.concatenate([t.cy for t in tables]),
        area=np.concatenate([t.area for t in tables]),
        crowd=np.concatenate([t.crowd for t in tables]),
        n_images=sum(t.n_images for t in tables),
        unknown_category=sum(t.unknown_category for t in tables),
        orphan=sum(t.orphan for t in tables),
    )


def dataset_stats(
    dataset: str | Path | DatasetSpec, splits: list[str] | None = None, plots: str | Path | None = None
) -> dict[str, Any]:
    """Statistics of a dataset's splits (all by default) and of all of them pooled (``"all"``).

    With ``plots`` PNG figures of the pooled statistics are written into that folder; their paths are listed
    under ``"plots"``.
    """
    ds = dataset if isinstance(dataset, DatasetSpec) else load_dataset(dataset)
    names = list(ds.splits) if not splits else list(dict.fromkeys(splits))
    for s in names:
        ds.split(s)  # clear error for unknown split names
    tables = {s: box_table(read_coco(ds.split(s).annotations), ds.class_map) for s in track(names, "reading splits")}
    pooled = _concat(list(tables.values()))
    result: dict[str, Any] = {
        "dataset": str(ds.path),
        "name": ds.name,
        "num_classes": len(ds.class_map),
        "splits": {s: summarise(t, ds.class_map) for s, t in tables.items()},
        "all": summarise(pooled, ds.class_map),
    }
    if plots is not None:
        result["plots"] = [str(p) for p in write_plots(pooled, ds.class_map, plots, title=ds.name)]
    return result


def write_plots(table: BoxTable, class_map: ClassMap, out_dir: str | Path, title: str = "dataset") -> list[Path]:
    """Class counts, box sizes, aspect ratios, objects per image and box centres as PNG files."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DetkitError("plots path exists and is not a folder", path=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = len(class_map)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        written.append(save_figure(fig, out_dir / name, dpi=110, bbox_inches="tight"))

    x = np.arange(k)
    boxes = np.bincount(table.label, minlength=k)
    pairs = np.unique(table.image_index * k + table.label) if len(table.label) else np.zeros(0, np.int64)
    images = np.bincount(pairs % k, minlength=k)
    fig = new_figure(max(5, 0.5 * k + 2), 3.5)
    ax = fig.add_subplot()
    ax.bar(x - 0.2, boxes, 0.4, label="boxes")
    ax.bar(x + 0.2, images, 0.4, label="images")
    ax.set_xticks(x, class_map.names, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_ylabel("count")
    ax.set_title(f"{title}: boxes and images per class")
    ax.legend()
    save(fig, "class_counts.png")

    side = np.sqrt(np.maximum(table.area, 0))
    fig = new_figure(6, 3.5)
    ax = fig.add_subplot()
    if len(side):
        ax.hist(side, bins=min(60, max(10, len(side) // 20)), color="tab:blue")
    left, right = ax.get_xlim()
    for edge, name in ((32, "small | medium"), (96, "medium | large")):
        if left < edge < right:  # a bucket edge beyond the data would stretch the axis or hang outside it
            ax.axvline(edge, color="tab:red", ls="--", lw=1)
            near_right = edge > left + 0.7 * (right - left)
            ax.text(
                edge,
                0.95,
                f" {name} " if near_right else f" {name}",
                color="tab:red",
                fontsize=8,
                va="top",
                ha="right" if near_right else "left",
                transform=ax.get_xaxis_transform(),
                clip_on=True,
            )
    ax.set_xlabel("box size sqrt(area) [px]")
    ax.set_ylabel("boxes")
    ax.set_title(f"{title}: box sizes (COCO buckets)")
    save(fig, "box_sizes.png")

    with np.errstate(divide="ignore", invalid="ignore"):
        log_aspect = np.log2(table.w / table.h)
    log_aspect = log_aspect[np.isfinite(log_aspect)]
    fig = new_figure(6, 3.5)
    ax = fig.add_subplot()
    if len(log_aspect):
        ax.hist(np.clip(log_aspect, -4, 4), bins=40, range=(-4, 4), color="tab:green")
    ax.set_xticks([-4, -2, -1, 0, 1, 2, 4], ["1:16", "1:4", "1:2", "1:1", "2:1", "4:1", "16:1"])
    ax.set_xlabel("aspect ratio w:h (log scale)")
    ax.set_ylabel("boxes")
    ax.set_title(f"{title}: box aspect ratios")
    save(fig, "aspect_ratios.png")

    per_image = np.bincount(table.image_index, minlength=table.n_images)
    fig = new_figure(6, 3.5)
    ax = fig.add_subplot()
    counts = np.bincount(per_image) if len(per_image) else np.zeros(1, np.int64)
    ax.bar(np.arange(len(counts)), counts, color="tab:purple")
    ax.set_xlabel("objects per image")
    ax.set_ylabel("images")
    ax.set_title(f"{title}: objects per image")
    save(fig, "objects_per_image.png")

    ok = np.isfinite(table.cx) & np.isfinite(table.cy)
    fig = new_figure(4.2, 4)
    ax = fig.add_subplot()
    ax.hist2d(table.cx[ok], table.cy[ok], bins=24, range=[[0, 1], [0, 1]], cmap="viridis")
    ax.invert_yaxis()
    ax.set_xlabel("x / width")
    ax.set_ylabel("y / height")
    ax.set_title(f"{title}: box centres")
    save(fig, "box_centres.png")
    return written
