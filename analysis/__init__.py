"""Analysis of tina runs: it reads what ``tina`` writes (nothing in ``tina`` imports it).

Rows: ``analysis.runs`` (``collect``: one row per run; curves and evaluations in long form), built
by ``analysis.row`` from ``tina.metrics`` (metrics.jsonl), ``tina.phase`` (the phase
transition), ``analysis.evals`` (evaluation results) and ``analysis.cost`` (GPU-hours, dollars,
FLOPs, the paper's tables), cached by ``analysis.cache``. Report: ``python -m analysis.report
SWEEP`` (report.md + report.html), with ``analysis.document`` (blocks and their rendering),
``analysis.plots``, ``analysis.paper`` and ``analysis.early_stop`` (sections).

The notebook entry points are exported here: ``analysis.collect(*paths)``,
``analysis.collect_curves`` and ``analysis.collect_evals``. They load lazily, so importing the
package imports nothing heavy and ``python -m analysis.phase`` does not find its own module
already imported (runpy warns about that).
"""

_LAZY = ("collect", "collect_curves", "collect_evals")
__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        from analysis import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
