"""What one job may change in its process, put back when it ends.

The jobs of a basic-launcher multirun share one process (tina.train's jobs one after another): the
environment (wandb's, the ranks'), torch's thread count and accelerate's patched context must not
carry over from one job to the next.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def restored() -> Iterator[None]:
    """Around one job: the process's environment, torch's threads and accelerate's context as before it."""
    import accelerate.utils
    import accelerate.utils.environment
    import torch

    environ, threads = dict(os.environ), torch.get_num_threads()
    contexts = accelerate.utils.environment.clear_environment, accelerate.utils.clear_environment
    try:
        yield
    finally:
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        for key, value in environ.items():
            if os.environ.get(key) != value:  # only what changed: setenv races getenv in other threads
                os.environ[key] = value
        torch.set_num_threads(threads)
        accelerate.utils.environment.clear_environment, accelerate.utils.clear_environment = contexts
