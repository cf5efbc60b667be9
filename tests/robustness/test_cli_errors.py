"""`detkit eval --robustness` bad inputs reach the user as one red line with a hint, before any model is loaded."""

from __future__ import annotations

from detkit_testing import assert_clean_error


def test_coco_o_root_without_domains(cli, synth_dataset, tmp_path):
    (tmp_path / "nothing_here" / "sketch").mkdir(parents=True)
    r = cli(
        "eval",
        tmp_path / "model.pt",
        "--data",
        synth_dataset,
        "--split",
        "test",
        "--robustness",
        "--coco-o",
        tmp_path / "nothing_here",
    )
    assert_clean_error(
        r, "no COCO-O domains found", str(tmp_path / "nothing_here"), "annotations/instances_val2017.json"
    )


def test_unknown_corruption_and_bad_severity(cli, synth_dataset, tmp_path):
    r = cli(
        "eval", tmp_path / "model.pt", "--data", synth_dataset, "--robustness", "--corruptions", "fog,gausian_noise"
    )
    assert_clean_error(r, "unknown corruption 'gausian_noise'", "did you mean 'gaussian_noise'")
    r = cli("eval", tmp_path / "model.pt", "--data", synth_dataset, "--robustness", "--severities", "0,3")
    assert_clean_error(r, "severity 0 is out of range")
