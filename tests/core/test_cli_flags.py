"""Library errors name parameters; the CLI adds the flags that set them to the hint."""

from __future__ import annotations

import click
import pytest
from detkit_testing import assert_clean_error

from detkit.cli.flags import flag_hint, with_flags
from detkit.errors import DetkitError


def _root() -> click.Group:
    root = click.Group("detkit")
    sub = click.Group("data")
    sub.add_command(
        click.Command("split", params=[click.Option(["--ratios"]), click.Option(["-n", "--num-workers", "workers"])])
    )
    root.add_command(sub)
    root.add_command(
        click.Command("eval", params=[click.Argument(["model"]), click.Option(["--data"]), click.Option(["--batch"])])
    )
    return root


def test_flag_hint_follows_the_invoked_subcommand():
    root = _root()
    assert flag_hint(root, ["data", "split", "d.yaml", "--ratios", "x"], ["ratios"]) == "on the command line: --ratios"
    assert flag_hint(root, ["--debug", "data", "split"], ["workers"]) == "on the command line: --num-workers"
    # library names that differ from the option's, and parameters the command has no option for
    assert flag_hint(root, ["eval", "m"], ["dataset", "batch_size"]) == "on the command line: --data, --batch"
    assert flag_hint(root, ["eval", "m"], ["model", "split"]) is None
    assert with_flags("add a split", root, ["eval"], ["dataset"]) == "add a split (on the command line: --data)"
    assert with_flags(None, root, ["eval"], ["dataset"]) == "on the command line: --data"
    assert with_flags("as is", root, ["eval"], ()) == "as is"


def test_detkit_error_keeps_its_parameters():
    assert DetkitError("x", params="split").params == ("split",)
    assert DetkitError("x", params=("a", "b")).params == ("a", "b")
    assert DetkitError("x").params == ()


@pytest.mark.parametrize(
    ("args", "message", "flag"),
    [
        (["predict", "m.onnx", "a.jpg", "--conf", "2"], "conf must be in [0, 1), got 2.0", "--conf"),
        (["data", "split", "d.yaml", "o", "--ratios", "train=0.5"], "ratios must sum to 1", "--ratios"),
    ],
)
def test_cli_errors_name_the_parameter_and_hint_the_flag(cli, tmp_path, monkeypatch, args, message, flag):
    monkeypatch.chdir(tmp_path)
    r = cli(*args)
    assert_clean_error(r, message, f"on the command line: {flag}")
