"""tina.accelerate_env: accelerate's clear_environment no longer races getenv() in other threads."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT

# Threads in getenv() and in malloc while the main thread enters accelerate's context over and over:
# without the install() line (accelerate's own context) this segfaulted in 2 of 3 tries here (and in
# 3 of 3 with a bare clear_environment loop: 2-5 s each).
RACE = """
import ctypes, threading
from accelerate.utils import DistributedDataParallelKwargs
from tina import accelerate_env
accelerate_env.install()
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p
stop = False
def getenv():
    while not stop:
        libc.getenv(b"TINA_NOT_SET")
def churn():
    while not stop:
        [bytearray(64) for _ in range(100)]
for f in (getenv, getenv, churn):
    threading.Thread(target=f, daemon=True).start()
for _ in range(5000):
    DistributedDataParallelKwargs(bucket_cap_mb=50).to_kwargs()
stop = True
print("survived")
"""


def test_handler_defaults_with_threads_in_getenv_do_not_crash():
    proc = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "survived", (proc.returncode, proc.stderr[-2000:])


def test_defaults_ignore_the_environment_and_the_environment_is_left_as_it_was(monkeypatch):
    from accelerate.utils import DistributedDataParallelKwargs, GradScalerKwargs

    from tina import accelerate_env

    accelerate_env.install()
    monkeypatch.setenv("TINA_PROBE", "1")
    before, real = dict(os.environ), os.environ
    assert DistributedDataParallelKwargs(bucket_cap_mb=50).to_kwargs() == {"bucket_cap_mb": 50}
    assert GradScalerKwargs().to_kwargs() == {}
    with accelerate_env.clear_environment():
        assert os.getenv("TINA_PROBE") is None and dict(os.environ) == {}
        os.environ["TINA_SET_INSIDE"] = "x"
    assert os.environ is real and dict(os.environ) == before
