"""The one home of tina's use of Hydra's private API (`hydra._internal`), against hydra-core 1.3.8.

Hydra has no public way to compose a sweep's master config outside a running app (tina.plan,
tina.sweep rerun, tina.search), to expand a sweep the way its basic sweeper does, to build the
callbacks of a launch, to extend its basic sweeper and launcher (hydra_plugins/tina_launcher), or
to read a command line as `hydra.main` will (its argparse parser: tina.train's precheck and
tina.evaluate's cli).
Every such name is imported here and nowhere else; tests/test_hydra_internal.py checks each
signature used against the locked version, so an upgrade that changes one fails there, loudly,
rather than in a user's sweep.
"""

import importlib

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
