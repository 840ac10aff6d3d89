"""The layer rule of pipeline/ (docs/ARCHITECTURE.md), read off the source with `ast`.

Every import counts, including those inside functions and under TYPE_CHECKING: an import
placed in a function body hides a cycle from the interpreter, not from this test.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipeline.core.paths import ROOT

#: Lower layers never import higher ones. Same rank: may import each other, without a cycle.
LAYERS: dict[str, int] = {
    "pipeline.core": 0,
    "pipeline.text": 1,
    "pipeline.dataset": 2,
    "pipeline.runtime": 3,
    "spiders": 4,  # the Scrapy project, run by the crawl stage in its own process
    "pipeline.stages": 5,
    "pipeline.report": 6,
    "pipeline.flows": 7,
    "pipeline.airflow_tasks": 8,
    "pipeline.cli": 8,
    "pipeline": 9,  # pipeline/__init__.py and __main__.py
}
#: The Scrapy project reads the bucket and the config; the stages run it, never the reverse.
SPIDERS_MAY_IMPORT = ("pipeline.core", "pipeline.text", "pipeline.dataset")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    files = sorted((ROOT / "pipeline").rglob("*.py")) + sorted((ROOT / "spiders").rglob("*.py"))
    return {_module_name(p): p for p in files}


MODULES = _modules()


def _layer(module: str) -> str:
    best = max((name for name in LAYERS if module == name or module.startswith(name + ".")), key=len, default=None)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS and docs/ARCHITECTURE.md")
    return best


def _resolve(name: str) -> str | None:
    """The project module an import names (`from pipeline.core.config import X` -> pipeline.core.config)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    return _imports_of(path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py")


def _imports_of(source: str, module: str, *, is_package: bool = False) -> set[str]:
    tree = ast.parse(source)
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            target = _resolve(name)
            if target and target != module and not (module.startswith(target + ".") and target in ("pipeline",)):
                found.add(target)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def test_every_module_is_in_a_layer():
    for module in MODULES:
        _layer(module)


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, targets in GRAPH.items():
        for target in targets:
            if LAYERS[_layer(target)] > LAYERS[_layer(module)]:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_core_imports_nothing_else_of_the_project():
    assert [
        f"{m} -> {t}"
        for m, ts in GRAPH.items()
        if _layer(m) == "pipeline.core"
        for t in ts
        if _layer(t) != "pipeline.core"
    ] == []


def test_spiders_import_only_the_layers_below_the_stages():
    bad = [
        f"{m} -> {t}"
        for m, ts in GRAPH.items()
        if _layer(m) == "spiders"
        for t in ts
        if _layer(t) not in (*SPIDERS_MAY_IMPORT, "spiders")
    ]
    assert bad == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    # A package's __init__ re-exporting its own submodule is not a cycle worth naming.
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in GRAPH.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_import_reader_sees_imports_inside_functions_and_relative_ones():
    source = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipeline.stages import clean\n"
        "def f():\n    from pipeline.flows.ingest import run_once\n    from . import gates\n"
    )
    # `from package import module` runs the package's __init__ too: both count.
    assert _imports_of(source, "pipeline.text.normalise") == {
        "pipeline.stages",
        "pipeline.stages.clean",
        "pipeline.flows.ingest",
        "pipeline.text",
        "pipeline.text.gates",
    }


@pytest.mark.parametrize("chunk", range(4))
def test_every_module_imports_on_its_own(chunk):
    """`python -c "import <module>"` works for every module, each in a fresh interpreter (any order)."""
    modules = sorted(m for m in MODULES if not m.endswith("__main__"))[chunk::4]

    def run(module: str) -> tuple[str, int, str]:
        proc = subprocess.run(
            [sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        return module, proc.returncode, proc.stderr[-500:]

    with ThreadPoolExecutor(max_workers=2) as pool:
        failed = [r for r in pool.map(run, modules) if r[1] != 0]
    assert failed == []
