"""A run folder remembers its dataset: `detkit train --resume RUN` needs nothing else, and says clearly when the
dataset has gone (with `--data` to point at its new place)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from detkit_testing import assert_clean_error

from detkit.errors import DetkitError
from detkit.stages.train import train


@pytest.fixture(scope="module")
def trained(tiny_dataset, tiny_overrides_for_fixtures, tmp_path_factory):
    """A one-epoch tiny run trained in ``origin/project/{data, runs/exp}``, then the project folder moved to
    ``base/project``: the recorded absolute path is gone, the path relative to the run folder still holds."""
    tmp = tmp_path_factory.mktemp("resume")
    origin = tmp / "origin" / "project"
    shutil.copytree(tiny_dataset, origin / "data")
    train("recipe:rtdetr-r18", origin / "data", epochs=1, out=origin / "runs", overrides=tiny_overrides_for_fixtures)
    (tmp / "base").mkdir()
    return origin, shutil.move(origin, tmp / "base" / "project")


@pytest.fixture
def project(trained, tmp_path):
    """This test's own copy of the trained project."""
    return shutil.copytree(trained[1], tmp_path / "project")


def _files(folder):
    """Every file under ``folder`` with its bytes: equal before and after means nothing was written."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _record(run):
    return json.loads((run / "summary.json").read_text())["dataset"]


def test_the_run_records_its_dataset(trained):
    origin, _ = trained
    record = _record(trained[1] / "runs" / "exp")
    assert record["path"] == "../../data/dataset.yaml"  # relative to the run folder
    assert record["absolute"] == str((origin / "data" / "dataset.yaml").resolve())
    assert record["given"] == str(origin / "data")


def test_resume_without_data_follows_the_run(cli, project, tmp_path):
    # the project folder moved as a whole (see the fixture): found relative to the run folder
    moved = project
    r = cli("train", "--resume", moved / "runs" / "exp", "--epochs", "2", "--json")
    assert r.code == 0, r.text
    assert json.loads(r.out)["epochs_done"] == 2
    assert _record(moved / "runs" / "exp")["absolute"] == str((moved / "data" / "dataset.yaml").resolve())
    # the override is written back, so the next resume continues the longer run (here: nothing left to do)
    assert yaml.safe_load((moved / "runs" / "exp" / "recipe.yaml").read_text())["train"]["epochs"] == 2
    r = cli("train", "--resume", moved / "runs" / "exp")
    assert_clean_error(r, "already finished its 2 epochs")
    assert str((moved / "data" / "dataset.yaml").resolve()) in "".join(r.out.split())  # says which dataset (rich wraps)

    # the run folder moved alone: found at the recorded absolute path (the run is then checked, and is complete)
    alone = tmp_path / "runs-archive" / "exp"
    shutil.move(moved / "runs" / "exp", alone)
    with pytest.raises(DetkitError, match="already finished its 2 epochs"):
        train(resume=alone)


def test_resume_of_a_run_whose_dataset_moved_is_one_clear_error(cli, project):
    run = project / "runs" / "exp"
    (project / "data").rename(project / "data-v2")
    before = _files(run)
    r = cli("train", "--resume", run, "--epochs", "2")
    assert_clean_error(r, f"cannot resume run {run}", str((project / "data" / "dataset.yaml").resolve()), "--data")
    assert len(r.err.strip().splitlines()) == 2  # the error line and its hint
    assert _files(run) == before  # nothing written

    # --data names the new place; the run then records it
    r = cli("train", "--resume", run, "--epochs", "2", "--data", project / "data-v2", "--json")
    assert r.code == 0, r.text
    assert json.loads(r.out)["epochs_done"] == 2
    assert _record(run)["absolute"] == str((project / "data-v2" / "dataset.yaml").resolve())


def test_resume_refuses_a_dataset_with_other_classes(cli, project, tmp_path):
    run = project / "runs" / "exp"
    other = tmp_path / "other"
    shutil.copytree(project / "data", other)
    spec = yaml.safe_load((other / "dataset.yaml").read_text())
    spec["classes"][0]["name"] = "ellipse"
    (other / "dataset.yaml").write_text(yaml.safe_dump(spec))
    before = _files(run)
    r = cli("train", "--resume", run, "--epochs", "2", "--data", other)
    assert_clean_error(r, "class map mismatch", "ellipse", "circle")
    # the same when the run's own dataset changed its classes in place
    shutil.copy(other / "dataset.yaml", project / "data" / "dataset.yaml")
    assert_clean_error(cli("train", "--resume", run, "--epochs", "2"), "class map mismatch", "ellipse")
    assert _files(run) == before


def test_the_library_names_the_data_parameter(tmp_path):
    with pytest.raises(DetkitError, match="data is required") as err:
        train("recipe:rtdetr-r18", None, out=tmp_path)
    assert "data=" in err.value.hint
    assert not any(tmp_path.iterdir())


def test_a_run_without_a_dataset_record_asks_for_data(cli, project):
    run = project / "runs" / "exp"
    summary = json.loads((run / "summary.json").read_text())
    del summary["dataset"]  # as written by an older detkit
    (run / "summary.json").write_text(json.dumps(summary))
    r = cli("train", "--resume", run, "--epochs", "2")
    assert_clean_error(r, f"run {run} does not record its dataset", "--data")
