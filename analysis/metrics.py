"""The metrics.jsonl reader lives in tina/metrics.py (phase detection needs it); re-exported here."""

from tina.metrics import metrics_path, read_metrics  # noqa: F401
