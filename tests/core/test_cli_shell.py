from detkit_testing import assert_clean_error


def test_version_and_help(cli):
    r = cli("--version")
    assert r.code == 0 and "detkit 0.1.0" in r.out
    r = cli("--help")
    assert r.code == 0 and "data" in r.out


def test_unknown_command_is_a_usage_error_without_traceback(cli):
    r = cli("no-such-stage")
    assert r.code != 0 and "Traceback" not in r.text


def test_dataset_errors_are_one_line(cli, tmp_path):
    # any stage reading a dataset goes through load_dataset; exercise the shell with a library call
    import typer

    from detkit.cli.app import app
    from detkit.data.dataset import load_dataset

    probe = typer.Typer()

    @probe.command()
    def load(path: str) -> None:
        load_dataset(path)

    app.add_typer(probe, name="probe-test")
    try:
        (tmp_path / "dataset.yaml").write_text(
            "classes: [{name: a, id: 1}]\nsplits: {train: {images: ../x, annotations: a.json}}\n"
        )
        r = cli("probe-test", "load", tmp_path / "dataset.yaml")
        assert_clean_error(r, "dataset.yaml", "'..'")
        assert len(r.err.strip().splitlines()) == 1
    finally:
        app.registered_groups[:] = [g for g in app.registered_groups if g.name != "probe-test"]
