"""The one home of tina's use of Hydra's private API (`hydra._internal`), against hydra-core 1.3.8.

Hydra has no public way to compose a sweep's master config outside a running app (tina.plan,
tina.sweep rerun, tina.search), to expand a sweep the way its basic sweeper does, to build the
callbacks of a launch, to extend its basic sweeper and launcher (hydra_plugins/tina_launcher), or
to read a command line as `hydra.main` will (its argparse parser: tina.train's precheck and
tina.evaluate's cli), or to have `hydra.main` raise a composition error rather than print it over
several lines and exit (errors_raised).
Every such name is imported here and nowhere else; tests/test_hydra_internal.py checks each
signature used against the locked version, so an upgrade that changes one fails there, loudly,
rather than in a user's sweep.
"""

import importlib
import os
from contextlib import contextmanager

# Where each name lives. Looked up on every access (module __getattr__), never cached here: Hydra's
# plugin discovery re-executes hydra._internal.core_plugins.basic_sweeper, and a BasicSweeper held
# from before that (one whose __init__ calls super(BasicSweeper, self) on the new global) breaks any
# subclass made from it: "super(type, obj): obj must be an instance or subtype of type".
_WHERE = {
    "Callbacks": "hydra._internal.callbacks",
    "ConfigLoaderImpl": "hydra._internal.config_loader_impl",
    "BasicLauncher": "hydra._internal.core_plugins.basic_launcher",
    "BasicSweeper": "hydra._internal.core_plugins.basic_sweeper",
    "create_config_search_path": "hydra._internal.utils",
    "get_args_parser": "hydra._internal.utils",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


LOCKED_VERSION = "1.3.8"  # constraints.txt's hydra-core: the version the signatures were checked on


class _Raising:
    active = True


_RAISING: list = []  # (state, HYDRA_FULL_ERROR's value before) of each errors_raised(), until released


@contextmanager
def errors_raised():
    """Within it, an exception `hydra.main` meets before the job starts (composing the config, in a
    run's on_run_start callback) comes out of `hydra.main` as itself, for tina to report in one line.
    Hydra prints such an error over several lines and exits, unless HYDRA_FULL_ERROR is set, when it
    re-raises it (hydra._internal.utils.run_and_report). `release()` ends that once the run starts
    (tina.start_check), so the job's own errors are reported the way Hydra reports them.
    Yields an object whose `active` says whether an exception came before the release."""
    state = _Raising()
    _RAISING.append((state, os.environ.get("HYDRA_FULL_ERROR")))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield state
    finally:
        release()


def release() -> None:
    """End errors_raised() early (no-op outside it): HYDRA_FULL_ERROR back to the user's value."""
    while _RAISING:
        state, before = _RAISING.pop()
        state.active = False
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before
