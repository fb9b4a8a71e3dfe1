"""`python -m tina.evaluate`: the Hydra app (root conf/evaluate.yaml, group conf/eval/)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from tina.errors import ConfigError
from tina.evaluate.config import check_override_keys, validate


@hydra.main(version_base="1.3", config_path="../../conf", config_name="evaluate")
def main(cfg: DictConfig) -> list[dict]:
    from tina.evaluate import evaluate

    records = evaluate(validate(cfg))
    _print(records)
    return records


def _print(records: list[dict]) -> None:
    """The results as a table; piped (a log, a file) at its full width: with no terminal to fit, rich
    would cut every cell to 80 columns."""
    from rich.console import Console
    from rich.table import Column, Table

    names = ("checkpoint", "step", "benchmark", "pass@1", "± std", "problems", "samples x seeds", "s")
    table = Table(*(Column(n, no_wrap=True) for n in names))
    for r in sorted(records, key=lambda r: (r["step"] is None, r["step"] or 0, r["checkpoint"], r["benchmark"])):
        std = r["pass@1_std"]
        table.add_row(r["checkpoint"], str(r["step"]), r["benchmark"], f"{r['pass@1']:.4f}",
                      "-" if std is None else f"{std:.4f}", str(r["n_problems"]),
                      f"{r['n_samples']} x {len(r['seeds'])}", f"{r['wall_seconds']:.0f}")
    Console(width=None if sys.stdout.isatty() else 1000).print(table)


def _argv(args: list[str]) -> list[str]:
    """`model=X` means base_model=X: conf/ has a `model` group (training's), so Hydra would read
    `model=X` as choosing a config file of that group and refuse it."""
    return [f"base_model={a[len('model='):]}" if a.startswith("model=") else a for a in args]


def cli() -> None:
    from tina.hydra_internal import get_args_parser

    args = _argv(sys.argv[1:])
    ns = get_args_parser().parse_args(args)  # the command line as Hydra will read it
    try:
        check_override_keys(ns.overrides)
    except ConfigError as e:
        sys.exit(f"tina.evaluate: {e}")
    info = ns.help or ns.hydra_help or ns.cfg or ns.info or ns.shell_completion or ns.experimental_rerun
    if not info and not any(o.lstrip("+").startswith(("run_dir=", "base_model=")) for o in ns.overrides):
        sys.exit("tina.evaluate: give run_dir=RUN (a training run directory) or model=MODEL (hub id or path)")
    sys.argv = sys.argv[:1] + args
    main()


if __name__ == "__main__":
    cli()
