"""Hydra's private API, used in tina.hydra_internal only: each name and signature tina relies on,
checked against the locked hydra-core. A failure here means an upgrade changed one: review
tina/hydra_internal.py and its users before anything else."""

from __future__ import annotations

import inspect
import re

import hydra
import pytest

from tests.helpers import ROOT
from tina import hydra_internal as hi


def _params(f) -> list[str]:
    return [p for p in inspect.signature(f).parameters if p != "self"]


def test_the_locked_version_is_the_one_checked():
    locked = re.search(r"^hydra-core==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert hydra.__version__ == locked == hi.LOCKED_VERSION, (hydra.__version__, locked, hi.LOCKED_VERSION)


def test_the_signatures_tina_calls():
    assert _params(hi.ConfigLoaderImpl) == ["config_search_path"]
    assert _params(hi.ConfigLoaderImpl.load_configuration)[:3] == ["config_name", "overrides", "run_mode"]
    assert _params(hi.ConfigLoaderImpl.load_sweep_config) == ["master_config", "sweep_overrides"]
    assert _params(hi.create_config_search_path) == ["search_path_dir"]
    assert _params(hi.BasicSweeper.split_arguments) == ["overrides", "max_batch_size"]
    assert isinstance(inspect.getattr_static(hi.BasicSweeper, "split_arguments"), staticmethod)
    assert _params(hi.BasicSweeper) == ["max_batch_size", "params"]
    assert _params(hi.Callbacks) == ["config"]
    for cls in (hi.BasicSweeper, hi.BasicLauncher):
        assert _params(cls.setup) == ["hydra_context", "task_function", "config"]
    assert _params(hi.BasicLauncher.launch) == ["job_overrides", "initial_job_idx"]
    assert _params(hi.BasicSweeper.sweep) == ["arguments"]


def test_no_other_module_imports_hydra_internals():
    users = sorted(str(p.relative_to(ROOT)) for pkg in ("tina", "analysis", "hydra_plugins")
                   for p in (ROOT / pkg).rglob("*.py") if "hydra._internal" in p.read_text())
    assert users == ["tina/hydra_internal.py"], users


def test_tinas_sweeper_survives_hydras_plugin_discovery():
    """Hydra's plugin discovery re-executes basic_sweeper: a process that imported tina.hydra_internal
    first (tina.plan, a test module) must still build tina's sweeper. A fresh process, as the order
    of imports is the point (the old module-level import failed here with super(type, obj))."""
    import subprocess
    import sys

    code = ("import tina.hydra_internal\nfrom hydra.core.plugins import Plugins\nPlugins.instance()\n"
            "from hydra_plugins.tina_launcher.tina_launcher import Sweeper\n"
            "Sweeper(max_batch_size=None, params={}, dry_run=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_command_line_parser_tina_reads():
    """tina.train's precheck reads `hydra.main`'s own parser: these destinations, these flags."""
    parser = hi.get_args_parser()
    dests = {a.dest for a in parser._actions}
    assert {"overrides", "multirun", "cfg", "help", "hydra_help", "info", "shell_completion", "config_name",
            "config_path", "config_dir", "experimental_rerun"} <= dests, dests
    ns = parser.parse_args(["-m", "--cfg", "job", "-cn", "train", "a=1", "b='x=y'"])
    assert (ns.multirun, ns.cfg, ns.config_name, ns.overrides) == (True, "job", "train", ["a=1", "b='x=y'"])



APP = """
import os, sys
import hydra
from tina import hydra_internal as hi

@hydra.main(version_base="1.3", config_path=sys.argv[2], config_name="train")
def main(cfg):
    print("ran")

sys.argv[1:3], mode = [], sys.argv[1]
if mode == "raised":
    with hi.errors_raised() as composing:
        try:
            main()
        except Exception as e:
            print("RAISED", type(e).__name__, composing.active, os.environ["HYDRA_FULL_ERROR"])
    print("AFTER", composing.active, os.environ.get("HYDRA_FULL_ERROR"))
else:
    main()
"""


@pytest.mark.parametrize("user_value", [None, "0"])
def test_errors_raised_makes_hydra_main_raise_what_it_would_print(user_value, tmp_path):
    """tina.train's cli reports a composition error in one line because, within errors_raised(),
    `hydra.main` re-raises it (HYDRA_FULL_ERROR, hydra._internal.utils.run_and_report); without it
    Hydra prints it over several lines and exits 1. After, the user's own value is back."""
    import os
    import subprocess
    import sys

    (tmp_path / "app.py").write_text(APP)
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    if user_value is not None:
        env["HYDRA_FULL_ERROR"] = user_value

    def app(mode):
        return subprocess.run([sys.executable, str(tmp_path / "app.py"), mode, str(ROOT / "conf"), "lora.rank=abc",
                               f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)

    printed = app("printed")
    assert printed.returncode == 1 and "could not be converted to Integer" in printed.stderr, printed.stderr
    assert len(printed.stderr.strip().splitlines()) > 1  # what tina's one line replaces
    raised = app("raised")
    assert raised.returncode == 0, raised.stderr
    assert raised.stdout.splitlines() == ["RAISED ConfigCompositionException True 1", f"AFTER False {user_value}"]
    assert not (tmp_path / "run").exists()
