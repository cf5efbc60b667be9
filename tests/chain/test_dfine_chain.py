"""The second model family through the whole chain, as a user runs it: a (tiny) DEIM-D-FINE recipe trains with
mosaic, mixup, MAL, FGL and DDF, resumes, evaluates, exports to ONNX with parity, and the ONNX file evaluates like
its checkpoint. Weights of one family given to the other family's recipe, and a recipe mixing both families'
options, are one line each."""

from __future__ import annotations

import json

import pytest
from detkit_testing import assert_clean_error

TINY_DFINE = [
    "model.encoder_dim=32",
    "model.encoder_ffn_dim=64",
    "model.hidden_dim=32",
    "model.num_heads=4",
    "model.num_queries=20",
    "model.decoder_layers=2",
    "model.decoder_ffn_dim=64",
    "model.num_points=[2,2]",
    "model.num_denoising=10",
    "train.warmup_iters=2",
    "train.ema_warmups=4",
    "train.multiscale=[1.0]",
    "train.multiscale_stop_epoch=null",
    "train.val_batch=4",
    "train.lr=5e-4",
    "train.workers=0",
    "train.batch=4",
    "train.param_groups=[]",
    "train.flat_epoch=1",
    "train.cosine_end_epoch=2",
    "augment.policy_epochs=[0,2,2]",
    "augment.stop_epoch=2",
    "augment.mosaic.p=1.0",
    "augment.mixup.p=1.0",
]


@pytest.fixture(scope="module")
def dfine_chain(synth_dataset, tmp_path_factory):
    import torch

    from detkit.cli.app import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dfine_chain")
    ds = synth_dataset

    def cli(*args):
        code = run([str(a) for a in args])
        assert code == 0, f"detkit {' '.join(map(str, args))} exited {code}"

    try:
        cli(
            "train",
            "recipe:deim-dfine-n",
            "--data",
            ds,
            "--epochs",
            "1",
            "--imgsz",
            "96",
            "--out",
            root / "runs",
            "--name",
            "exp",
            "--quiet",
            *TINY_DFINE,
        )
        cli("train", "--resume", root / "runs" / "exp", "--epochs", "2", "--quiet")
        run_dir = root / "runs" / "exp"
        cli("eval", run_dir, "--data", ds, "--split", "test", "--out", root / "eval", "--name", "ckpt", "--quiet")
        cli("export", "onnx", run_dir, "--out", root / "export" / "model.onnx", "--quiet")
        cli(
            "eval",
            root / "export" / "model.onnx",
            "--data",
            ds,
            "--split",
            "test",
            "--out",
            root / "eval",
            "--name",
            "onnx",
            "--quiet",
        )
    finally:
        torch.set_num_threads(threads)
    return root, ds


def test_dfine_trains_with_its_own_losses_and_resumes(dfine_chain):
    root, _ = dfine_chain
    run_dir = root / "runs" / "exp"
    recipe = (run_dir / "recipe.yaml").read_text()
    assert "family: dfine" in recipe and "classification: mal" in recipe
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"loss_mal", "loss_bbox", "loss_giou", "loss_fgl", "loss_ddf"} <= set(header)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_done"] == 2 and summary["epochs"] == 2


def test_dfine_onnx_file_evaluates_like_its_checkpoint(dfine_chain):
    root, _ = dfine_chain
    ckpt = json.loads((root / "eval" / "ckpt" / "metrics.json").read_text())
    onnx = json.loads((root / "eval" / "onnx" / "metrics.json").read_text())
    sidecar = json.loads((root / "export" / "model.json").read_text())
    assert sidecar["parity"]["passed"] and sidecar["parity"]["max_abs_diff_scores"] < 1e-4
    for key in ("AP", "AP50"):
        assert onnx["metrics"][key] == pytest.approx(ckpt["metrics"][key], abs=1e-3)


def test_weights_of_the_other_family_are_one_line(dfine_chain, cli, tmp_path):
    root, ds = dfine_chain
    ckpt = root / "runs" / "exp" / "checkpoints" / "last.pt"
    r = cli("train", "recipe:rtdetr-r18", "--data", ds, "--weights", ckpt, "--epochs", "1", "--out", tmp_path)
    assert_clean_error(r, "weights of a 'dfine' model, but the recipe's model.family is 'rtdetr'")
    assert not any(tmp_path.iterdir())


def test_a_recipe_mixing_families_is_one_line(cli, tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text("base: recipe:rtdetr-r18\nmodel:\n  size: n\n")
    r = cli("recipes", "show", path)
    assert_clean_error(r, "model.size is an option of the 'dfine' family, but model.family is 'rtdetr'")
    r = cli("recipes", "show", "dfine-n", "model.depth=18")
    assert_clean_error(r, "model.depth is an option of the 'rtdetr' family, but model.family is 'dfine'")
