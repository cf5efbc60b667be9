"""The package rules of docs/architecture.md ("Which package may import which"), enforced on the source.

Every ``import detkit.X`` / ``from detkit.X import`` in ``detkit/`` counts, at module level or inside a function
(an import moved into a function still makes the dependency). A package may import only packages of a lower
layer; two packages of one layer do not import each other. Family-specific names stay inside ``detkit/models/``.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "detkit"

# lowest first; keep in step with docs/architecture.md
LAYERS: list[set[str]] = [
    {"errors"},
    {"utils"},
    {"data"},
    {"models"},
    {"config"},
    {"evaluation"},
    {"calibration"},
    {"inference"},
    {"slicing", "export", "explain", "engine"},
    {"stages"},
    {"api"},
    {"cli"},
    {"__main__"},
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}

# what the issue "one seam per model family" keeps out of the engine, export, CLI and stage entry points
FAMILY_NAMES = re.compile(
    r"\bRTDETR\b|\bPResNet\b|\benc_score_head\b|models\.rtdetr\b|\bSetCriterion\b|"
    r"\bFEATURE_STRIDES\b|models\.dfine\b|\bDFine\b"
)
FAMILY_FREE = ("engine", "export", "cli", "stages", "api.py", "inference")


def _unit(path: Path) -> str:
    """The package (or top-level module) a file belongs to."""
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[tuple[str, int]]:
    """(imported detkit unit, line) of every import in the file, wherever it sits."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "detkit":
                modules = [f"detkit.{a.name}" for a in node.names]
            else:
                modules = [node.module]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "detkit" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


def _edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(ROOT.rglob("*.py")):
        if path == ROOT / "__init__.py":  # the lazy top-level API (detkit.load_model) sits above everything
            continue
        src = _unit(path)
        for dst, line in _imports(path):
            if dst != src and dst != "__version__":
                edges[(src, dst)].append(f"{path.relative_to(ROOT.parent)}:{line}")
    return edges


def test_every_package_has_a_layer():
    units = {_unit(p) for p in ROOT.rglob("*.py") if p != ROOT / "__init__.py"}
    assert units - set(LAYER_OF) == set(), "add the new package to LAYERS and to docs/architecture.md"


def test_packages_import_only_lower_layers():
    wrong = []
    for (src, dst), where in sorted(_edges().items()):
        if src in LAYER_OF and dst in LAYER_OF and LAYER_OF[dst] >= LAYER_OF[src]:
            wrong.append(f"{src} -> {dst} ({', '.join(where[:3])})")
    assert wrong == []


def test_no_cycles_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for src, dst in _edges():
        graph[src].add(dst)
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend(stack[stack.index(nxt) :] + [node, nxt] if nxt in stack else [node, nxt])
                return True
            if nxt not in state and visit(nxt, [*stack, node]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if node not in state and visit(node, []):
            break
    assert cycle == []


@pytest.mark.parametrize("where", FAMILY_FREE)
def test_no_family_names_outside_models(where):
    paths = [ROOT / where] if where.endswith(".py") else sorted((ROOT / where).rglob("*.py"))
    hits = []
    for path in paths:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if FAMILY_NAMES.search(code) and "recipe:" not in code:
                hits.append(f"{path.relative_to(ROOT.parent)}:{i}: {line.strip()}")
    assert hits == []


def test_no_citations_of_documents_outside_the_repository():
    repo = ROOT.parent
    cited = re.compile(r"(?:[\w./-]*/)?([\w-]+\.md)\b")
    written = {"report.md"}  # artifacts detkit writes, not documents it cites
    missing = []
    for path in [*ROOT.rglob("*.py"), *(repo / "recipes").rglob("*.yaml")]:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in cited.finditer(line):
                doc = match.group(0)
                if doc in written:
                    continue
                if not ((repo / doc).is_file() or (repo / "docs" / match.group(1)).is_file()):
                    missing.append(f"{path.relative_to(repo)}:{i}: {doc}")
            if "spec B." in line or "shared/specs" in line or "../shared" in line:
                missing.append(f"{path.relative_to(repo)}:{i}: {line.strip()}")
    assert missing == []
