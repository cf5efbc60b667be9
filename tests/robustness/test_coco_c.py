"""COCO-C: rendering once into a seeded cache, resuming an interrupted render, mPC / rPC, plots and report."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.evaluation.robustness import coco_c, robustness_markdown, run_robustness
from detkit.evaluation.robustness.corruptions import corrupt

CORRUPTIONS = ["gaussian_noise", "defocus_blur"]
SEVERITIES = [1, 5]


@pytest.fixture
def renders(monkeypatch):
    """Counts every image the cache renders; ``fail_at`` makes the n-th render crash (an interrupted run)."""
    calls: list[tuple[str, int]] = []
    state = {"fail_at": None}

    def counting(image, name, severity, seed=0):
        calls.append((name, severity))
        if state["fail_at"] is not None and len(calls) >= state["fail_at"]:
            raise KeyboardInterrupt("simulated interruption")
        return corrupt(image, name, severity, seed)

    monkeypatch.setattr(coco_c, "corrupt", counting)
    return calls, state


def run(oracle, synth, cache, **kw):
    kw.setdefault("corruptions", CORRUPTIONS)
    kw.setdefault("severities", SEVERITIES)
    return run_robustness(oracle, 1.0, synth, cache_dir=cache, split="test", workers=1, **kw)


def test_second_run_renders_nothing_and_gives_the_same_numbers(synth, oracle, renders, tmp_path):
    calls, _ = renders
    first = run(oracle, synth, tmp_path / "cache", out_dir=tmp_path / "eval")
    assert len(calls) == 4 * 6  # 2 corruptions x 2 severities x 6 images
    assert first["coco_c"]["cache"]["images_rendered"] == 24
    calls.clear()
    second = run(oracle, synth, tmp_path / "cache")
    assert calls == []
    assert second["coco_c"]["cache"]["rendered"] == [] and len(second["coco_c"]["cache"]["reused"]) == 4
    assert second["coco_c"]["AP"] == first["coco_c"]["AP"]
    # another seed is another cache entry
    run(oracle, synth, tmp_path / "cache", seed=1, corruptions=["gaussian_noise"], severities=[1])
    assert len(calls) == 6


def test_an_interrupted_render_resumes_only_the_missing_pieces(synth, oracle, renders, tmp_path):
    calls, state = renders
    state["fail_at"] = 9  # crashes inside the second (corruption, severity) folder
    with pytest.raises(KeyboardInterrupt):
        run(oracle, synth, tmp_path / "cache")
    (key_dir,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert (key_dir / "gaussian_noise" / "s1" / "done.json").is_file()
    assert not (key_dir / "gaussian_noise" / "s5").exists()
    assert not [p for p in key_dir.rglob("*.tmp")]  # nothing half-written is left behind
    state["fail_at"] = None
    calls.clear()
    result = run(oracle, synth, tmp_path / "cache")
    assert len(calls) == 3 * 6
    assert result["coco_c"]["cache"]["reused"] == [["gaussian_noise", 1]]
    assert sorted(map(tuple, result["coco_c"]["cache"]["rendered"])) == [
        ("defocus_blur", 1),
        ("defocus_blur", 5),
        ("gaussian_noise", 5),
    ]


def test_concurrent_runs_on_one_cache_render_each_folder_once(synth, renders, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from detkit.data.coco import read_coco

    calls, _ = renders
    split = synth.split("test")
    coco = read_coco(split.annotations)

    def render_once():
        cache = coco_c.open_cache(coco, split.images, split.annotations, seed=0, cache_dir=tmp_path / "cache")
        cache.render("fog", 2)
        return cache.rendered, cache.reused

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _: render_once(), range(2)))
    assert len(calls) == 6
    assert sorted(len(rendered) for rendered, _ in outcomes) == [0, 1]


def test_cached_images_are_the_seeded_corruptions_of_the_originals(synth, oracle, tmp_path):
    result = run(oracle, synth, tmp_path / "cache", corruptions=["gaussian_noise"], severities=[3], seed=4)
    split = synth.split("test")
    coco = json.loads(split.annotations.read_text())
    im = coco["images"][2]
    clean = cv2.cvtColor(cv2.imread(str(split.images / im["file_name"])), cv2.COLOR_BGR2RGB)
    cached = cv2.cvtColor(
        cv2.imread(f"{result['coco_c']['cache']['dir']}/gaussian_noise/s3/{im['id']}.png"), cv2.COLOR_BGR2RGB
    )
    expected = corrupt(clean, "gaussian_noise", 3, coco_c.image_seed(4, "gaussian_noise", 3, im["id"]))
    assert np.array_equal(cached, expected)


def test_mpc_rpc_heatmap_and_report(synth, oracle, tmp_path):
    result = run(oracle, synth, tmp_path / "cache", out_dir=tmp_path / "eval")
    c = result["coco_c"]
    cells = [c["AP"][name][str(s)] for name in CORRUPTIONS for s in SEVERITIES]
    assert c["mPC"] == pytest.approx(np.mean(cells))
    assert c["rPC"] == pytest.approx(c["mPC"] / 100.0 * 100.0)
    assert c["mean_AP_per_corruption"]["gaussian_noise"] == pytest.approx(
        np.mean([c["AP"]["gaussian_noise"]["1"], c["AP"]["gaussian_noise"]["5"]])
    )
    assert c["AP"]["gaussian_noise"]["5"] < c["AP"]["gaussian_noise"]["1"] < 100.0  # stronger noise, lower AP
    assert c["complete_benchmark"] is False
    assert (tmp_path / "eval" / "plots" / "robustness_coco_c.png").stat().st_size > 1000
    json.dumps(result, allow_nan=False)
    md = robustness_markdown(result)
    assert "## Robustness" in md and "mPC =" in md and "rPC =" in md and "| gaussian_noise |" in md
    assert "not comparable with published values" in md and "plots/robustness_coco_c.png" in md


def test_both_suites_together_in_the_report(synth, oracle, tmp_path):
    result = run(
        oracle,
        synth,
        tmp_path / "cache",
        coco_o_root=synth.root,
        corruptions="fog",
        severities="2",
        out_dir=tmp_path / "eval",
    )
    md = robustness_markdown(result)
    assert "### COCO-O" in md and "### COCO-C" in md and "Effective robustness ER =" in md
    assert set(result["plots"]) == {"coco_o", "coco_c"}


def test_bad_requests_are_clear_errors(synth, oracle, tmp_path):
    with pytest.raises(DetkitError, match="unknown corruption 'snowy'"):
        run(oracle, synth, tmp_path / "c", corruptions="snowy")
    with pytest.raises(DetkitError, match="severity 7 is out of range"):
        run(oracle, synth, tmp_path / "c", severities=[7])
    with pytest.raises(DetkitError, match="clean AP must be a fraction"):
        run_robustness(oracle, 45.0, synth, corruptions="fog")
    with pytest.raises(DetkitError, match="nothing to run"):
        run_robustness(oracle, 0.4, synth, corruptions="none")
    with pytest.raises(DetkitError, match="dataset has no split 'nope'"):
        run_robustness(oracle, 0.4, synth, corruptions="fog", split="nope", cache_dir=tmp_path / "c")
    oracle.class_map = ClassMap(("x",), (1,))
    with pytest.raises(DetkitError, match="class map mismatch"):
        run(oracle, synth, tmp_path / "c")
