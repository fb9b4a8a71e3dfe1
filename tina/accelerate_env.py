"""accelerate's `clear_environment`, made safe for a process with threads.

accelerate (1.15) computes each kwargs handler's defaults inside `clear_environment()`, which calls
`os.environ.clear()` (unsetenv on every variable) and then sets them all back (setenv, which
reallocates C's `environ`). The C environment has no lock: a thread in getenv() meanwhile reads
freed memory. A training process has several threads by then (tokenizers', torch's, the run lock's
heartbeat), and GRPOTrainer's construction passes through this context: seen once as a segfault in
getenv in a test run, reproduced in seconds by tests/test_accelerate_env.py.

What the context is for (handler defaults that Python code reads from os.environ) only needs
Python's view of the environment to be empty, so this version swaps `os.environ` for an empty dict
while it runs and leaves the C environment alone; a key set inside is dropped at exit, as before.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def clear_environment() -> Iterator[None]:
    real = os.environ
    os.environ = {}  # type: ignore[assignment]  # os.getenv reads this attribute too
    try:
        yield
    finally:
        os.environ = real


def install() -> None:
    """Replace accelerate's context (its one user, KwargsHandler.to_kwargs, imports it at call time)."""
    import accelerate.utils
    import accelerate.utils.environment

    accelerate.utils.environment.clear_environment = clear_environment
    accelerate.utils.clear_environment = clear_environment
