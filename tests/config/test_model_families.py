"""Model families in recipes: ``model.family`` picks the family, ``loss:`` is the family's criterion section, and
a recipe or weights of the wrong family are one clear line."""

from __future__ import annotations

import pytest
import torch
import yaml
from detkit_testing import assert_clean_error

from detkit.config.recipe import resolve_recipe
from detkit.errors import DetkitError
from detkit.models.families import FAMILIES, check_weights_family, get_family


def test_family_defaults_to_rtdetr_and_owns_the_loss_section():
    r = resolve_recipe("recipe:rtdetr-r18", ["loss.giou=3"])
    assert r.model.family == "rtdetr" and r.family is FAMILIES["rtdetr"]
    assert r.loss.giou == 3.0 and r.loss.classification == "vfl"
    assert "loss" in r.model_dump() and "loss" not in r.model_dump()["train"]


def test_recipes_written_before_families_still_load(tmp_path):
    """A run folder's recipe.yaml (or a checkpoint's recipe) of an older detkit kept the loss under train.loss."""
    old = resolve_recipe("recipe:rtdetr-r18").model_dump(mode="json")
    old["train"]["loss"] = dict(old.pop("loss"), bbox=4.0)
    del old["model"]["family"]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(old))
    for source in (path, old):
        r = resolve_recipe(source)
        assert r.loss.bbox == 4.0 and r.model.family == "rtdetr"


def test_unknown_family_names_the_recipe_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("base: recipe:rtdetr-r18\nmodel:\n  family: rtdtr\n")
    with pytest.raises(DetkitError) as e:
        resolve_recipe(path)
    assert str(path) in str(e.value) and "unknown model family 'rtdtr'" in str(e.value)
    assert "did you mean 'rtdetr'" in e.value.hint


def test_unknown_family_on_the_command_line(cli, tmp_path):
    r = cli("recipes", "show", "rtdetr-r18", "model.family=yolo")
    assert_clean_error(r, "unknown model family 'yolo'")


def test_rtdetr_criterion_can_use_mal():
    recipe = resolve_recipe("recipe:rtdetr-r18", ["loss.classification=mal", "loss.mal=2"])
    criterion = recipe.family.build_criterion(recipe.loss, 3)
    torch.manual_seed(0)
    out = {"logits": torch.randn(1, 5, 3), "boxes": torch.rand(1, 5, 4) * 0.5 + 0.25}
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    losses = criterion(out, targets)
    assert set(losses) == {"loss_mal", "loss_bbox", "loss_giou"}
    assert recipe.family.loss_groups(recipe.loss) == ("loss_mal", "loss_bbox", "loss_giou")
    vfl = resolve_recipe("recipe:rtdetr-r18")
    assert "loss_vfl" in vfl.family.build_criterion(vfl.loss, 3)(out, targets)


def test_weights_of_another_family_are_refused_in_one_line():
    family = get_family("rtdetr")
    with pytest.raises(DetkitError) as e:
        check_weights_family(family, {}, {"model": {"family": "dfine"}}, "w.pt")
    assert str(e.value) == "w.pt: these are weights of a 'dfine' model, but the recipe's model.family is 'rtdetr'"
    check_weights_family(family, {}, {"model": {}}, "w.pt")  # older checkpoints: RT-DETR
    check_weights_family(family, {"x": torch.zeros(1)}, None, "w.pt")  # unknown to every family: the loader decides
