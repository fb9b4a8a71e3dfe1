"""Analysis of tina runs: metrics parsing, phase-transition detection, cost accounting.

Modules: ``analysis.metrics`` (the one metrics.jsonl reader), ``analysis.phase`` (format-reward /
completion-length phase transition), ``analysis.cost`` (GPU-hours, dollars, FLOPs, the paper's
tables). Submodules are imported explicitly; nothing heavy is imported here.
"""
