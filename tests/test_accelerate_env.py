"""tina.accelerate_env: accelerate's clear_environment no longer races getenv() in other threads."""

from __future__ import annotations

import ctypes
import dataclasses
import os
from typing import ClassVar

from accelerate.utils import KwargsHandler

LIBC = ctypes.CDLL(None)
LIBC.getenv.restype = ctypes.c_char_p


@dataclasses.dataclass
class _Probe(KwargsHandler):
    """A handler whose construction (which to_kwargs does inside accelerate's context) records what
    Python and C see of the environment at that moment."""

    inside: ClassVar[list] = []  # (os.getenv, C getenv, C's environ array): a class attribute, not a field

    def __post_init__(self):
        environ = ctypes.c_void_p.in_dll(LIBC, "environ").value
        _Probe.inside.append((os.getenv("TINA_PROBE"), LIBC.getenv(b"TINA_PROBE"), environ))


def test_handler_defaults_leave_the_c_environment_alone(monkeypatch):
    """The race (a thread in getenv() while accelerate unsets and resets every variable: a segfault
    in 2 of 3 tries of a 5,000-round stress run) needs the C environment to change under the
    thread. Checked without luck: while the defaults are computed, C still sees every variable at
    the same `environ` array, and Python sees none."""
    from tina import accelerate_env

    accelerate_env.install()
    monkeypatch.setenv("TINA_PROBE", "1")
    environ = ctypes.c_void_p.in_dll(LIBC, "environ").value
    _Probe.inside = []
    _Probe().to_kwargs()
    assert _Probe.inside[-1] == (None, b"1", environ)
    assert ctypes.c_void_p.in_dll(LIBC, "environ").value == environ and LIBC.getenv(b"TINA_PROBE") == b"1"


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
