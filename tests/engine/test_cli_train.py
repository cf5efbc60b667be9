"""`detkit train` from the command line: a short run, and every bad input as one clean error line."""

from __future__ import annotations

import json
import shutil

import yaml
from detkit_testing import assert_clean_error


def test_cli_train_prints_overrides_and_artifacts(cli, tiny_dataset, tiny_overrides, tmp_path):
    # 3 epochs asked, but the wall-time limit stops the run after the first; gradients accumulated over 2 batches
    r = cli(
        "train",
        "recipe:rtdetr-r18",
        "--data",
        tiny_dataset,
        "--epochs",
        "3",
        "--out",
        tmp_path,
        *tiny_overrides,
        "train.ema=false",
        "train.time_limit_minutes=0.0001",
        "train.accumulate=2",
    )
    assert r.code == 0, r.text
    assert "stopped: time_limit" in r.out
    assert (
        "override train.epochs=3" in r.out
        and "override model.hidden_dim=32" in r.out
        and "override train.ema=false" in r.out
    )
    run = tmp_path / "exp"
    flat = "".join(r.out.split())  # rich wraps long paths
    assert str(run) in flat and str(run / "checkpoints" / "best.pt") in flat and str(run / "metrics.csv") in flat
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[1] == "1"  # 2 batches of 2 images, accumulated into 1 optimizer step
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["train"]["ema"] is False and saved["model"]["num_queries"] == 10
    # the next run auto-increments; an existing --name is refused
    r2 = cli(
        "train",
        "recipe:rtdetr-r18",
        "--data",
        tiny_dataset,
        "--epochs",
        "1",
        "--out",
        tmp_path,
        "--name",
        "exp",
        "--json",
        *tiny_overrides,
    )
    assert_clean_error(r2, "already exists")


def test_unknown_recipe(cli, tiny_dataset):
    assert_clean_error(cli("train", "recipe:rtdetr-r19", "--data", tiny_dataset), "rtdetr-r19")


def test_bad_override_key_suggests_the_right_one(cli, tiny_dataset):
    assert_clean_error(
        cli("train", "recipe:rtdetr-r18", "--data", tiny_dataset, "train.lrr=1e-3"), "train.lrr", "train.lr"
    )


def test_bad_override_type(cli, tiny_dataset):
    assert_clean_error(cli("train", "recipe:rtdetr-r18", "--data", tiny_dataset, "train.epochs=many"), "train.epochs")
    assert_clean_error(cli("train", "recipe:rtdetr-r18", "--data", tiny_dataset, "--imgsz", "100"), "imgsz")


def test_training_sizes_too_small_for_the_queries_are_refused_before_any_work(cli, tiny_dataset, tmp_path):
    """(S/8)² + (S/16)² + (S/32)² tokens must hold model.num_queries at train.imgsz and every multi-scale size."""
    base = ["train", "recipe:rtdetr-r18-cpu", "--data", tiny_dataset, "--out", tmp_path / "runs"]
    assert_clean_error(
        cli(*base, "--imgsz", "64"),
        "train.imgsz 64 gives 84 feature tokens, fewer than the 100 queries",
        "model.num_queries",
    )
    assert_clean_error(
        cli(*base, "--imgsz", "96", "train.multiscale=[0.5,1.0]"), "the multi-scale size 64 gives 84 feature tokens"
    )
    assert not (tmp_path / "runs").exists()


def test_missing_dataset_and_missing_split(cli, tiny_dataset, tmp_path):
    assert_clean_error(cli("train", "recipe:rtdetr-r18"), "no dataset")
    data = tmp_path / "noval"
    shutil.copytree(tiny_dataset, data)
    spec = yaml.safe_load((data / "dataset.yaml").read_text())
    del spec["splits"]["val"]
    (data / "dataset.yaml").write_text(yaml.safe_dump(spec))
    assert_clean_error(cli("train", "recipe:rtdetr-r18", "--data", data, "--out", tmp_path / "runs"), "no split 'val'")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))


def test_class_map_mismatch_with_weights_is_refused_unless_reinit_head(cli, tiny_dataset, tiny_overrides, tmp_path):
    from detkit.config.recipe import resolve_recipe
    from detkit.data.classmap import ClassMap
    from detkit.models.checkpoint import save_checkpoint
    from detkit.models.rtdetr.builder import build_model

    recipe = resolve_recipe("recipe:rtdetr-r18", tiny_overrides)
    other = ClassMap.from_names(["cat", "dog"])
    weights = save_checkpoint(
        tmp_path / "other.pt",
        model=build_model(recipe.model, 2).state_dict(),
        class_map=other,
        recipe=recipe.model_dump(mode="json"),
    )
    r = cli(
        "train",
        "recipe:rtdetr-r18",
        "--data",
        tiny_dataset,
        "--weights",
        weights,
        "--out",
        tmp_path / "runs",
        *tiny_overrides,
    )
    assert_clean_error(r, "class map mismatch", "cat", "circle", "--reinit-head")
    r = cli(
        "train",
        "recipe:rtdetr-r18",
        "--data",
        tiny_dataset,
        "--weights",
        weights,
        "--reinit-head",
        "--epochs",
        "1",
        "--out",
        tmp_path / "runs",
        "--json",
        *tiny_overrides,
    )
    assert r.code == 0, r.text
    assert json.loads(r.out)["epochs_done"] == 1


def test_resume_errors(cli, tiny_dataset, tmp_path):
    assert_clean_error(cli("train", "--data", tiny_dataset, "--resume", tmp_path / "nope"), "nothing to resume")
    assert_clean_error(cli("train", "--data", tiny_dataset), "no recipe")
    (tmp_path / "run").mkdir()
    assert_clean_error(cli("train", "--data", tiny_dataset, "--resume", tmp_path / "run"), "last.pt")
