"""COCO-O: domain discovery in the real and synthetic layouts, bad roots, class-map checks, per-domain scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.evaluation.robustness import run_robustness
from detkit.evaluation.robustness.coco_o import COCO_O_DOMAINS, evaluate_coco_o, find_domains
from detkit.evaluation.robustness.metrics import effective_robustness, relative_drop


def make_domain(root: Path, name: str, categories=({"id": 1, "name": "a"},), with_images: bool = True) -> None:
    (root / name / "annotations").mkdir(parents=True)
    if with_images:
        (root / name / "val2017").mkdir()
    coco = {"images": [], "annotations": [], "categories": list(categories)}
    (root / name / "annotations" / "instances_val2017.json").write_text(json.dumps(coco))


def test_domains_are_found_in_paper_order_then_by_name(tmp_path):
    for name in ("sketch", "weather", "zz_extra", "cartoon", "a_extra"):
        make_domain(tmp_path, name)
    (tmp_path / "not_a_domain").mkdir()
    assert [d.name for d in find_domains(tmp_path)] == ["weather", "cartoon", "sketch", "a_extra", "zz_extra"]
    d = find_domains(tmp_path)[0]
    assert d.images == tmp_path / "weather" / "val2017"
    assert d.annotations == tmp_path / "weather" / "annotations" / "instances_val2017.json"


@pytest.mark.parametrize("folder", ["ood_coco", "coco-o", "coco_o"])
def test_root_may_be_the_parent_of_the_unzipped_folder(tmp_path, folder):
    for name in COCO_O_DOMAINS:
        make_domain(tmp_path / folder, name)
    assert [d.name for d in find_domains(tmp_path)] == list(COCO_O_DOMAINS)
    assert [d.name for d in find_domains(tmp_path / folder)] == list(COCO_O_DOMAINS)


def test_synthetic_domains_are_found_from_the_dataset_root(synth):
    assert [d.name for d in find_domains(synth.root)] == list(COCO_O_DOMAINS)


def test_a_root_without_domains_is_a_one_line_error_naming_root_and_layout(tmp_path):
    (tmp_path / "empty" / "weather" / "val2017").mkdir(parents=True)
    with pytest.raises(DetkitError) as e:
        find_domains(tmp_path / "empty")
    assert "no COCO-O domains found" in str(e.value) and str(tmp_path / "empty") in str(e.value)
    assert "annotations/instances_val2017.json" in e.value.hint and "val2017" in e.value.hint
    assert "\n" not in str(e.value)
    with pytest.raises(DetkitError, match="not a folder"):
        find_domains(tmp_path / "missing")


def test_a_domain_without_its_image_folder_is_named(tmp_path):
    make_domain(tmp_path, "tattoo", with_images=False)
    with pytest.raises(DetkitError, match="domain 'tattoo' has annotations but no val2017/"):
        find_domains(tmp_path)


def test_category_ids_must_match_the_model(tmp_path, oracle):
    make_domain(tmp_path, "painting", categories=({"id": 1, "name": "circle"}, {"id": 77, "name": "zebra"}))
    with pytest.raises(DetkitError) as e:
        evaluate_coco_o(oracle, tmp_path, oracle.class_map, clean_ap=50.0)
    msg = str(e.value)
    assert "instances_val2017.json" in msg and "domain 'painting'" in msg and "77" in msg and "class map" in msg


def test_every_domain_is_scored_and_summarised_exactly(synth, oracle, tmp_path):
    result = run_robustness(
        oracle, clean_ap=1.0, dataset_or_split=None, coco_o_root=synth.root, out_dir=tmp_path / "eval"
    )
    o = result["coco_o"]
    assert result["coco_c"] is None and result["clean_AP"] == 100.0
    assert list(o["domains"]) == list(COCO_O_DOMAINS)
    aps = [d["AP"] for d in o["domains"].values()]
    assert all(0.0 <= ap < 100.0 for ap in aps)  # every style moves the oracle's boxes
    assert o["mAP_O"] == pytest.approx(sum(aps) / len(aps))
    assert o["relative_drop"] == pytest.approx(relative_drop(100.0, o["mAP_O"]))
    assert o["effective_robustness"] == pytest.approx(o["mAP_O"] - 0.45 * 100.0)
    assert o["effective_robustness"] == pytest.approx(effective_robustness(o["mAP_O"], 100.0))
    for d in o["domains"].values():
        assert d["relative_drop"] == pytest.approx(100.0 - d["AP"])
        assert d["images"] == 6 and d["boxes"] > 0
    assert o["totals"]["images"] == 36 and o["matches_coco_o_totals"] is False and o["missing_coco_o_domains"] == []
    assert (tmp_path / "eval" / result["plots"]["coco_o"]).stat().st_size > 1000
    json.dumps(result, allow_nan=False)


def test_without_a_clean_ap_relative_numbers_are_left_out(synth, oracle):
    o = evaluate_coco_o(oracle, synth.root / "coco_o", oracle.class_map, clean_ap=None)
    assert o["relative_drop"] is None and o["effective_robustness"] is None and o["mAP_O"] >= 0


def test_wrong_class_map_from_a_foreign_model(synth, oracle):
    oracle.class_map = ClassMap(("x", "y"), (101, 102))
    with pytest.raises(DetkitError, match="category ids 1, 2, 3, 4, 5"):
        run_robustness(oracle, 0.5, None, coco_o_root=synth.root)
