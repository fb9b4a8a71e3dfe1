"""Analysis of tina runs: metrics parsing, phase-transition detection, cost accounting, reports.

Modules: ``analysis.metrics`` (the one metrics.jsonl reader), ``analysis.phase`` (format-reward /
completion-length phase transition), ``analysis.cost`` (GPU-hours, dollars, FLOPs, the paper's
tables), ``analysis.collect`` (one row per run) and ``analysis.report`` (``python -m
analysis.report SWEEP``: report.md + report.html).

The notebook entry points are exported here: ``analysis.collect(*paths)`` (the module
``analysis.collect`` is callable and calls its ``collect`` function, so the name works whichever
was imported first), ``analysis.collect_curves`` and ``analysis.collect_evals``. They load
lazily: importing the package imports nothing heavy, so ``python -m analysis.phase`` does not
find its own module already imported (runpy warns about that).
"""

_LAZY = ("collect", "collect_curves", "collect_evals")
__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod = importlib.import_module("analysis.collect")
        return mod if name == "collect" else getattr(mod, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
