"""The structure holds: imports run one way (no cycles, nothing in tina imports analysis), and
modules stay small enough to read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("tina", "analysis", "hydra_plugins")
MAX_LINES = 550  # a module longer than this holds more than one concern (the phase detector is one algorithm)
LONG_BY_DESIGN = {"tina/phase.py"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports (at any depth of the file: a deferred import is still a dependency)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_imports_have_no_cycle():
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_tina_never_imports_analysis():
    bad = sorted(f"{m} -> {d}" for m, deps in import_graph().items() if m.startswith("tina")
                 for d in deps if d.startswith("analysis"))
    assert not bad, bad


def test_modules_stay_small():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES and str(p.relative_to(ROOT)) not in LONG_BY_DESIGN}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


if __name__ == "__main__":  # the graph, one module per line, for the closing note
    for module, deps in sorted(import_graph().items()):
        print(f"{module} -> {', '.join(sorted(deps)) or '-'}")


def test_each_symbol_has_one_import_path():
    """analysis used to re-export tina's metrics reader, phase detector and price functions."""
    import analysis.cost
    import analysis.phase

    assert not (ROOT / "analysis" / "metrics.py").exists()
    assert not {"detect", "main", "FORMAT_KEY"} & set(vars(analysis.phase))  # only `python -m analysis.phase`
    assert not {"load_prices", "PRICES_PATH"} & set(vars(analysis.cost))
