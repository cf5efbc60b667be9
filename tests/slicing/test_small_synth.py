"""``detkit data synth --small``: many small objects on large images, reproducible per (seed, split, index)."""

from __future__ import annotations

import json

import numpy as np

from detkit.data.synth import SMALL, generate_synthetic


def test_small_variant_is_many_small_objects_and_reproducible(tmp_path):
    a = generate_synthetic(tmp_path / "a", train=0, val=0, calib=0, test=3, imgsz=192, small=True, seed=4)
    b = generate_synthetic(tmp_path / "b", train=2, val=0, calib=0, test=2, imgsz=192, small=True, seed=4)
    plain = generate_synthetic(tmp_path / "p", train=0, val=0, calib=0, test=2, imgsz=192, seed=4)
    for name in ("000001.jpg", "000002.jpg"):  # a split's images do not depend on the other splits or its size
        assert (a / "images/test" / name).read_bytes() == (b / "images/test" / name).read_bytes()
        assert (a / "images/test" / name).read_bytes() != (plain / "images/test" / name).read_bytes()
    coco = json.loads((a / "annotations/test.json").read_text())
    assert [(im["width"], im["height"]) for im in coco["images"]] == [(192, 192)] * 3
    counts = np.bincount([x["image_id"] for x in coco["annotations"]], minlength=4)[1:]
    assert (counts >= 15).all() and (counts <= SMALL.max_objects).all()  # a few may not find room at 192 px
    wh = np.array([x["bbox"][2:] for x in coco["annotations"]])
    assert wh.max() <= SMALL.size_px[1] + 2 and np.median(wh.max(axis=1)) >= SMALL.size_px[0]
    assert (wh.prod(axis=1) < 32**2).mean() > 0.95  # COCO "small"


def test_cli_small_defaults_and_refusal(cli, tmp_path):
    r = cli("data", "synth", tmp_path / "s", "--small", "--train", 0, "--val", 0, "--calib", 0, "--test", 1, "--json")
    assert r.code == 0, r.text
    out = json.loads(r.out)
    assert out["imgsz"] == 1024 and out["small"] is True
    coco = json.loads((tmp_path / "s" / "annotations" / "test.json").read_text())
    assert coco["images"][0]["width"] == 1024 and 20 <= len(coco["annotations"]) <= 60
    r = cli("data", "synth", tmp_path / "t", "--small", "--imgsz", 48, "--test", 1)
    assert r.code == 1 and "too small for the small-object variant" in r.err
    assert "use imgsz 64 or more" in r.err and "on the command line: --imgsz" in r.err
    assert "Traceback" not in r.text and not (tmp_path / "t").exists()
