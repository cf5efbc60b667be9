"""Optional integrations (the extras in pyproject.toml) never break the main path.

A plain `pip install .` has only the main dependencies: every detkit module must import without anything
else, and a training run without tensorboard must finish with one info line instead of TensorBoard logs.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: every top-level module outside the main dependencies (and the standard library)
# is made unimportable, then every detkit module is imported.
IMPORT_ALL = r"""
import importlib, importlib.abc, json, pkgutil, sys
blocked = set(json.loads(sys.argv[1]))
tried = set()

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in blocked:
            tried.add(top)
            raise ModuleNotFoundError(f"No module named {name!r} (not a main dependency)", name=name)
        return None

sys.meta_path.insert(0, Block())
import detkit
failed = {}
for info in pkgutil.walk_packages(detkit.__path__, "detkit."):
    if info.name.endswith("__main__"):  # runs the CLI
        continue
    try:
        importlib.import_module(info.name)
    except Exception as e:
        failed[info.name] = f"{type(e).__name__}: {e}"
print(json.dumps({"file": detkit.__file__, "failed": failed, "tried": sorted(tried),
                  "leaked": sorted(m for m in sys.modules if m.split(".")[0] in blocked)}))
"""


def _main_requirements() -> list[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed metadata lists the same requirements
        return [r for r in importlib.metadata.requires("detkit") or [] if "extra ==" not in r]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _main_closure() -> set[str]:
    """Distributions a plain install brings: the main requirements and, recursively, theirs (markers honoured)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wanted: dict[str, set[str]] = {}
    todo = [(r, "") for r in _main_requirements()]
    while todo:
        text, extra = todo.pop()
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        new_extras = {""} | set(req.extras)
        if name in wanted and new_extras <= wanted[name]:
            continue
        fresh = new_extras - wanted.get(name, set())
        wanted.setdefault(name, set()).update(new_extras)
        try:
            requires = importlib.metadata.requires(req.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo.extend((r, e) for r in requires for e in fresh)
    return set(wanted)


def _outside_main_modules() -> set[str]:
    from packaging.utils import canonicalize_name

    main = _main_closure()
    return {
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if module != "detkit"
        and module not in sys.stdlib_module_names
        and not any(canonicalize_name(d) in main for d in dists)
    }


def test_every_module_imports_with_only_the_main_dependencies():
    blocked = _outside_main_modules()
    extras = {"tensorboard", "fiftyone", "transformers", "netcal", "pytest"}
    assert {m for m in extras if _installed(m)} <= blocked
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, json.dumps(sorted(blocked))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).resolve().is_relative_to(ROOT)  # this checkout's code, not an installed copy
    assert got["failed"] == {}, got["failed"]
    assert got["leaked"] == [], got["leaked"]


def _installed(module: str) -> bool:
    return module in importlib.metadata.packages_distributions()


@pytest.fixture
def no_tensorboard(monkeypatch):
    """tensorboard made unimportable (as after a plain install), and no info line given yet in this process."""
    from detkit.utils import optional

    for name in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(optional, "_told", set())


def test_a_missing_extra_is_one_info_line_once_and_quiet_under_quiet(no_tensorboard, capsys):
    from detkit.utils import optional
    from detkit.utils.optional import optional_import
    from detkit.utils.progress import progress_display

    with progress_display(enabled=False):  # what --quiet and --json open
        assert optional_import("torch.utils.tensorboard", "tensorboard", "no TensorBoard logs") is None
    assert capsys.readouterr().err == ""
    optional._told.clear()
    for _ in range(2):
        assert optional_import("torch.utils.tensorboard", "tensorboard", "no TensorBoard logs") is None
    assert capsys.readouterr().err == "tensorboard not installed: no TensorBoard logs (pip install tensorboard)\n"


def test_a_broken_extra_is_reported_as_unusable(monkeypatch, tmp_path, capsys):
    from detkit.utils import optional

    (tmp_path / "brokenextra.py").write_text("raise TypeError('built against another protobuf')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(optional, "_told", set())
    assert (
        optional.optional_import("brokenextra", "brokenextra", "no broken logs", "pip install -U brokenextra") is None
    )
    assert capsys.readouterr().err == (
        "brokenextra unusable (TypeError: built against another protobuf): "
        "no broken logs (pip install -U brokenextra)\n"
    )
