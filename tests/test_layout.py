"""The layout a newcomer relies on: what may import what, read from the source itself.

The graph is built with `ast` from every module of `monitor/`, `detectors/` and `inference/`, counting
imports deferred into functions too (a deferred import that closes a cycle is still a cycle) but not those
under ``if TYPE_CHECKING:`` (they never run). Importing ``a.b.c`` also runs ``a/__init__`` and
``a/b/__init__``, so those are edges as well.

Rules:
* no cycle between modules, between top-level packages, or between `monitor`'s sub-packages;
* `detectors` and `inference` import nothing from `monitor`;
* the CLI is a leaf: nothing outside `monitor.cli` imports it (but ``python -m monitor``);
* `monitor.app` (the composition root) is imported only by the CLI and the demo;
* `monitor.synthetic` (generated traffic) is imported by nothing in the product but the CLI.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("monitor", "detectors", "inference")


def module_names(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the given top-level packages."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _with_parents(target: str, modules: dict[str, Path]) -> list[str]:
    parts = target.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules]


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports (at run time)."""
    modules = module_names(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_lines(tree)
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                for module in _with_parents(target, modules):
                    if module != name and not name.startswith(module + "."):
                        graph[name].add(module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def collapse(graph: dict[str, set[str]], depth: int, prefix: str = "") -> dict[str, set[str]]:
    """The graph between groups of modules: their first ``depth`` name parts (under ``prefix``)."""
    def group(name: str) -> str | None:
        if not name.startswith(prefix):
            return None
        parts = name.split(".")
        return ".".join(parts[:depth]) if len(parts) >= depth else None

    collapsed: dict[str, set[str]] = defaultdict(set)
    for source, targets in graph.items():
        g = group(source)
        if g is None:
            continue
        collapsed[g]
        for target in targets:
            t = group(target)
            if t is not None and t != g:
                collapsed[g].add(t)
    return dict(collapsed)


def importers_of(graph: dict[str, set[str]], package: str) -> set[str]:
    return {source for source, targets in graph.items()
            if not (source == package or source.startswith(package + "."))
            and any(t == package or t.startswith(package + ".") for t in targets)}


def layout_problems(root: Path, packages: Iterable[str] = PACKAGES) -> list[str]:
    """Every broken rule of the module docstring, as one line each (empty when the layout holds)."""
    graph = import_graph(root, packages)
    problems = [f"module cycle: {' ↔ '.join(c)}" for c in cycles(graph)]
    problems += [f"package cycle: {' ↔ '.join(c)}" for c in cycles(collapse(graph, 1))]
    problems += [f"monitor sub-package cycle: {' ↔ '.join(c)}" for c in cycles(collapse(graph, 2, "monitor."))]
    for package in ("detectors", "inference"):
        problems += [f"{s} imports monitor" for s in sorted(graph) if s.split(".")[0] == package
                     and any(t.split(".")[0] == "monitor" for t in graph[s])]
    problems += [f"{s} imports the CLI" for s in sorted(importers_of(graph, "monitor.cli")) if s != "monitor.__main__"]
    problems += [f"{s} imports the composition root monitor.app" for s in sorted(importers_of(graph, "monitor.app"))
                 if not s.startswith(("monitor.cli", "monitor.synthetic"))]
    problems += [f"product code {s} imports monitor.synthetic" for s in sorted(importers_of(graph, "monitor.synthetic"))
                 if not s.startswith("monitor.cli")]
    return problems


def test_the_tree_has_no_cycles_and_every_folder_keeps_to_its_imports() -> None:
    assert layout_problems(ROOT) == []


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_cycle_hidden_in_a_deferred_import_is_found(tmp_path: Path) -> None:
    root = _plant(tmp_path, {
        "monitor/__init__.py": "",
        "monitor/config.py": "def check():\n    from monitor.alerts.rules import RULES\n    return RULES\n",
        "monitor/alerts/__init__.py": "",
        "monitor/alerts/rules.py": "from monitor.config import check\nRULES = {}\n",
        "detectors/__init__.py": "", "inference/__init__.py": "",
    })
    assert layout_problems(root) == ["module cycle: monitor.alerts.rules ↔ monitor.config",
                                     "monitor sub-package cycle: monitor.alerts ↔ monitor.config"]


@pytest.mark.parametrize(("files", "expected"), [
    ({"detectors/chain.py": "from monitor.ingest.batch import Annotation\n", "monitor/ingest/__init__.py": "",
      "monitor/ingest/batch.py": "import detectors.chain\n"},
     ["module cycle: detectors.chain ↔ monitor.ingest.batch", "package cycle: detectors ↔ monitor",
      "detectors.chain imports monitor"]),
    ({"monitor/ingest/__init__.py": "", "monitor/ingest/source.py": "from monitor.synthetic.broker import B\n",
      "monitor/synthetic/__init__.py": "", "monitor/synthetic/broker.py": "B = 1\n"},
     ["product code monitor.ingest.source imports monitor.synthetic"]),
    ({"monitor/jobs/__init__.py": "", "monitor/jobs/report.py": "from monitor.cli.options import load\n",
      "monitor/cli/__init__.py": "", "monitor/cli/options.py": "load = 1\n"},
     ["monitor.jobs.report imports the CLI"]),
])
def test_each_rule_fails_on_a_planted_breach(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    root = _plant(tmp_path, {"monitor/__init__.py": "", "detectors/__init__.py": "", "inference/__init__.py": "",
                             **files})
    assert layout_problems(root) == expected
