"""The one home of tina's use of Hydra's private API (`hydra._internal`), against hydra-core 1.3.8.

Hydra has no public way to compose a sweep's master config outside a running app (tina.plan,
tina.sweep rerun, tina.search), to expand a sweep the way its basic sweeper does, to build the
callbacks of a launch, or to extend its basic sweeper and launcher (hydra_plugins/tina_launcher).
Every such name is imported here and nowhere else; tests/test_hydra_internal.py checks each
signature used against the locked version, so an upgrade that changes one fails there, loudly,
rather than in a user's sweep.
"""

from hydra._internal.callbacks import Callbacks  # noqa: F401
from hydra._internal.config_loader_impl import ConfigLoaderImpl  # noqa: F401
from hydra._internal.core_plugins.basic_launcher import BasicLauncher  # noqa: F401
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # noqa: F401
from hydra._internal.utils import create_config_search_path  # noqa: F401

LOCKED_VERSION = "1.3.8"  # constraints.txt's hydra-core: the version the signatures were checked on
