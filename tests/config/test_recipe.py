"""Recipes: base inheritance, overrides, and every bad-input path (library and CLI)."""

from __future__ import annotations

import json

import pytest
from detkit_testing import assert_clean_error

from detkit.config.recipe import deep_merge, list_recipes, resolve_recipe, valid_keys
from detkit.errors import DetkitError


def test_shipped_recipes_resolve_to_the_four_variants():
    assert {"rtdetr-r18", "rtdetr-r34", "rtdetr-r50", "rtdetr-r101"} <= set(list_recipes())
    r101 = resolve_recipe("recipe:rtdetr-r101")
    assert (r101.model.depth, r101.model.encoder_dim, r101.model.encoder_ffn_dim, r101.model.decoder_layers) == (
        101,
        384,
        2048,
        6,
    )
    r18 = resolve_recipe("recipe:rtdetr-r18")
    assert (r18.model.expansion, r18.model.decoder_layers, r18.model.frozen_bn, r18.name) == (
        0.5,
        3,
        False,
        "rtdetr-r18",
    )
    assert r18.model.num_queries == 300  # inherited from base.yaml


def test_overrides_are_typed():
    r = resolve_recipe("recipe:rtdetr-r50", ["model.decoder_layers=4", "model.eval_idx=2", "model.frozen_bn=false"])
    assert (r.model.decoder_layers, r.model.eval_idx, r.model.frozen_bn) == (4, 2, False)


@pytest.mark.parametrize(
    "override, needle, hint",
    [
        ("model.decoder_layer=3", "unknown recipe key 'model.decoder_layer'", "did you mean 'model.decoder_layers'?"),
        ("modle.depth=18", "unknown recipe key 'modle.depth'", "did you mean 'model.depth'?"),
        ("model.depth=19", "model.depth: Input should be 18, 34, 50 or 101", None),
        ("model.num_queries=many", "model.num_queries", None),
        ("model.eval_idx=3", "eval_idx 3 is out of range for 3 decoder layers", None),
        ("model.depth", "not of the form key=value", None),
        ("model.depth=!!python/object/apply:os.getcwd []", "value is not valid YAML", None),
    ],
)
def test_bad_overrides(override, needle, hint):
    with pytest.raises(DetkitError) as e:
        resolve_recipe("recipe:rtdetr-r18", [override])
    assert needle in str(e.value)
    if hint:
        assert e.value.hint == hint


def test_base_inheritance_merges_dicts_and_replaces_lists(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "a.yaml").write_text("model:\n  depth: 34\n  num_queries: 100\n")
    (tmp_path / "b.yaml").write_text("base: shared/a.yaml\nmodel:\n  num_queries: 50\n  decoder_layers: 2\n")
    r = resolve_recipe(tmp_path / "b.yaml")
    assert (r.model.depth, r.model.num_queries, r.model.decoder_layers, r.name) == (34, 50, 2, "b")
    assert deep_merge({"a": {"x": [1, 2], "y": 1}}, {"a": {"x": [3]}}) == {"a": {"x": [3], "y": 1}}
    (tmp_path / "c.yaml").write_text("base: recipe:rtdetr-r18\nmodel:\n  decoder_layers: 2\n")
    assert resolve_recipe(tmp_path / "c.yaml").model.expansion == 0.5


def test_base_cycle_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(DetkitError, match=r"inheritance cycle: a.yaml → b.yaml → a.yaml"):
        resolve_recipe(tmp_path / "a.yaml")


def test_bad_recipe_files(tmp_path):
    tag = tmp_path / "tag.yaml"
    tag.write_text("model: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(DetkitError, match="YAML tag not allowed"):
        resolve_recipe(tag)
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  hiden_dim: 128\n")
    with pytest.raises(DetkitError, match="unknown recipe key 'model.hiden_dim' in recipe file") as e:
        resolve_recipe(typo)
    assert e.value.hint == "did you mean 'model.hidden_dim'?" and str(typo) in str(e.value)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("- 1\n- 2\n")
    with pytest.raises(DetkitError, match="must be a YAML mapping"):
        resolve_recipe(scalar)
    missing_base = tmp_path / "mb.yaml"
    missing_base.write_text("base: nowhere.yaml\n")
    with pytest.raises(DetkitError, match="recipe file not found"):
        resolve_recipe(missing_base)
    with pytest.raises(DetkitError, match="unknown recipe 'rtdetr-r5'") as e:
        resolve_recipe("recipe:rtdetr-r5")
    assert "did you mean 'recipe:rtdetr-r50'" in e.value.hint


def test_valid_keys_cover_model_fields():
    keys = valid_keys()
    assert "model.depth" in keys and "model.eval_idx" in keys and "model" in keys


def test_cli_recipes_list_and_show(cli):
    r = cli("recipes", "list", "--json")
    assert r.code == 0, r.text
    listed = {x["name"]: x for x in json.loads(r.out)["recipes"]}
    assert listed["rtdetr-r18"]["params"] == 20_184_464 and listed["rtdetr-r101"]["backbone"] == "PResNet-101vd"

    r = cli("recipes", "show", "rtdetr-r18", "model.decoder_layers=2", "--json")
    assert r.code == 0, r.text
    shown = json.loads(r.out)
    assert shown["recipe"]["model"]["decoder_layers"] == 2
    assert shown["params"] < 20_184_464 and shown["imgsz"] == [640, 640]
    r = cli("recipes", "show", "recipe:rtdetr-r18", "--imgsz", "480x640", "--json")
    full = json.loads(r.out)
    assert full["imgsz"] == [480, 640] and 40 < full["gflops"] < 50  # 61.5 GFLOPs at 640² scaled by 0.75
    r = cli("recipes", "show", "rtdetr-r18")
    assert r.code == 0 and "GFLOPs" in r.out and "rtdetr-r18.yaml" in r.out


def test_cli_recipes_errors(cli):
    assert_clean_error(
        cli("recipes", "show", "rtdetr-r18", "model.dept=3"),
        "unknown recipe key 'model.dept'",
        "did you mean 'model.depth'?",
    )
    assert_clean_error(cli("recipes", "show", "rtdetr-r19"), "unknown recipe 'rtdetr-r19'")
    assert_clean_error(cli("recipes", "show", "rtdetr-r18", "--imgsz", "500"), "multiples of 32")
    assert_clean_error(cli("recipes", "show", "rtdetr-r18", "--imgsz", "big"), "expected S or HxW")
    assert_clean_error(cli("recipes", "show", "rtdetr-r18", "model.depth=7"), "model.depth")
