"""Is a completion's answer equal to the gold? math-verify's verdict, bounded in time and cached.

Why a module of its own: three rewards (accuracy, length, cosine) ask this same question about the
same completions in one step, and a completion is model output, so it can be anything: a 1 MB
string, 5000 nested braces, `\\boxed{9^{9^{9^9}}}`. Unbounded, one such completion costs SymPy
seconds to minutes and stalls the whole GPU step. So here:

- every check (gold parse if that gold is new to the process + answer parse + verify) is cut off
  at CHECK_SECONDS and then scores TIMEOUT (wrong, and counted by the rewards): in a worker process
  it is killed there; in the calling process a signal fires at 80% of it, which a long C call or
  an overloaded CPU can delay (see set_workers); a caller off the main thread, where no signal
  reaches, has its checks sent to a worker process of its own;
- each verdict is cached by (completion tail, gold), the timeout verdict included, so a
  completion costs its bound once per step however many rewards score it;
- with 4 CPUs or more a group's checks are spread over worker processes (`default_workers()`: one
  per CPU, at most 8; `set_workers` overrides it), each bounded by a signal in its own main
  thread, and one stuck in C code that ignores signals is killed at CHECK_SECONDS and replaced.
  Chosen by benchmarks/bench_rewards.py (figures in benchmarks/RESULTS.md).

math-verify's own timeouts do not fit: they are whole seconds (`signal.alarm`), apply per parse and
per gold/answer comparison (so several per completion), are swallowed into "wrong" (a timeout
cannot be counted), and raise ValueError off the main thread. They are turned off
(`parsing_timeout=None`, `timeout_seconds=None`) and `_within` bounds the whole check instead.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from multiprocessing.connection import wait
from typing import Any, Callable, Optional

from latex2sympy2_extended import NormalizationConfig
from math_verify import LatexExtractionConfig, parse, verify

# Only the tail of a completion goes to math-verify: answers sit at the end, and its regexes and
# SymPy conversion on megabytes of text would stall the step. 20k characters is more than the
# paper's 3584-token completions (~12k characters) and most of an 8960-token one.
MAX_PARSE_CHARS = 20_000
# Wall-clock bound on one completion's check. Well-formed answers take 1-40 ms; the worst cases
# measured (2 cores; \boxed{9^{9^{9^9}}}, \boxed{(10^{10})!}, \boxed{7^{10^8}}, 5000 nested braces,
# a 3000-element set, \sum_{k=1}^{3000} k^k) ran for minutes unbounded and all stop at the signal.
CHECK_SECONDS = 1.0
# The signal fires at 80% of the bound. The rest covers its delivery, which waits for the C call
# under way to return, and the unwinding of SymPy's stack (together <= 10 ms at rest, up to 0.2 s
# once at load average 9 on 2 cores), and in a worker the reply before the parent's hard kill.
_SOFT_SECONDS = 0.8 * CHECK_SECONDS
_CACHE_SIZE = 4096  # verdicts (keys are digests) and parsed golds, per process


class Verdict(enum.Enum):
    CORRECT = "correct"
    WRONG = "wrong"  # also: math-verify raised, or a worker process died
    NO_GOLD = "no_gold"  # the gold is None, unparseable, or took the whole bound to parse
    TIMEOUT = "timeout"  # the check hit CHECK_SECONDS: scored as wrong, counted by the rewards


class _DropTimeoutOffWarning(logging.Filter):
    """math-verify warns once that its timeouts are off; `_within` replaces them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _logger in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_logger).addFilter(_DropTimeoutOffWarning())

_ANSWER_CONFIG = [
    LatexExtractionConfig(
        # Answers must be well-formed LaTeX; equations=True is left out (math-verify 0.9 warns
        # on every call with it).
        normalization_config=NormalizationConfig(
            nits=False, malformed_operators=False, basic_latex=True, boxed="all", units=True
        ),
        boxed_match_priority=0,  # \boxed{} answers are tried before any other LaTeX
        try_extract_without_anchor=False,
    )
]


class _Timeout(BaseException):
    """BaseException so that math-verify's and SymPy's `except Exception` cannot swallow it."""


# Python ignores an exception raised where nothing can catch it (a finalizer, a weakref callback,
# both frequent in SymPy), so a single alarm that lands there is lost and the check runs on unbounded.
# The timer therefore repeats every _REFIRE_SECONDS until cancelled; `_armed` makes a delivery that
# is still pending after the cancel a no-op, and `_drop_lost_timeout` keeps the lost ones out of
# sys.unraisablehook (a traceback on stderr each, or a Python hook that the next alarm interrupts).
_REFIRE_SECONDS = 0.02
_armed = False


def _on_alarm(signum, frame):
    if _armed:
        raise _Timeout


def _drop_lost_timeout(hook: Callable, unraisable: Any) -> None:
    if unraisable.exc_type is not _Timeout:
        hook(unraisable)


def _within(seconds: float, fn: Callable, *args: Any) -> Any:
    """fn(*args), interrupted by _Timeout once `seconds` of wall time have passed.

    Only in the main thread (where TRL calls rewards, and in a worker): signals are delivered
    there alone. It also stops CPython's big-integer power and division loops (they check for
    signals). `judge` sends other threads' checks to a worker process (`_thread_pool`).
    """
    global _armed
    assert threading.current_thread() is threading.main_thread(), "a signal bound needs the main thread"
    previous, hook = signal.signal(signal.SIGALRM, _on_alarm), sys.unraisablehook
    sys.unraisablehook = functools.partial(_drop_lost_timeout, hook)
    _armed = True
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds, _REFIRE_SECONDS)
        return fn(*args)
    finally:
        _armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sys.unraisablehook = hook


# gold -> parsed gold; () for unparseable. Cached because the G completions of a prompt share a gold
# (SymPy objects are immutable); per process, so each worker has its own.
_GOLDS: dict[str, tuple] = {}


def _gold(gold: str) -> tuple:
    if gold not in _GOLDS:
        if len(_GOLDS) >= _CACHE_SIZE:
            _GOLDS.clear()
        _GOLDS[gold] = ()  # stays () if the parse raises or is cut off: such a gold is bad data
        _GOLDS[gold] = tuple(parse(gold, extraction_mode="first_match", parsing_timeout=None))
    return _GOLDS[gold]


def _judge(tail: str, gold: str) -> Verdict:
    gold_parsed = _gold(gold)
    if not gold_parsed:
        return Verdict.NO_GOLD
    answer = parse(tail, extraction_config=_ANSWER_CONFIG, extraction_mode="first_match", parsing_timeout=None)
    return Verdict.CORRECT if verify(list(gold_parsed), answer, timeout_seconds=None) else Verdict.WRONG


def _judge_within(task: tuple[str, Optional[str]]) -> Verdict:
    tail, gold = task
    if gold is None:
        return Verdict.NO_GOLD
    try:
        if threading.current_thread() is not threading.main_thread():
            # Only when no worker process could start (judge): nothing else can bound it here.
            return _judge(tail, gold)
        return _within(_SOFT_SECONDS, _judge, tail, gold)
    except _Timeout:
        # A gold whose parse was cut off is cached as unparseable: the data's fault, not the model's.
        return Verdict.TIMEOUT if _GOLDS.get(gold) else Verdict.NO_GOLD
    except Exception:
        return Verdict.WRONG


# Checks run once per process, unbounded, before its first bounded one: math-verify and SymPy build
# their parsers and import whole subpackages on first use (measured: 0.3 s for the first check in a
# process, 0.5 s more for the first radical compared with a decimal), which under load could push a
# well-formed answer past the bound and score it a timeout.
_WARM_UP = [
    ("\\boxed{1}", "$1$"), ("\\boxed{10\\sqrt{2}}", "$-0.5$"), ("\\boxed{(1, -2)}", "$[0,5)$"),
    ("\\boxed{x^2+2x+1}", "$(x+1)^2$"), ("\\boxed{120^\\circ}", "$\\frac{\\pi}{6}$"),
]
_warm = False


def _warm_up() -> None:
    global _warm
    if not _warm:
        for tail, gold in _WARM_UP:
            try:
                _judge(tail, gold)
            except Exception:
                pass
        _warm = True


def _judge_here(task: tuple[str, Optional[str]]) -> tuple[Verdict, float]:
    start = time.monotonic()
    return _judge_within(task), time.monotonic() - start


def _serve(conn) -> None:
    """A worker: judge each task it is sent, in its own main thread (so under a signal), until EOF."""
    _warm_up()
    conn.send(None)  # ready: a task's clock starts only once a worker has started and can take it
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent closed its end (a reset, if a reply was unread)
            return
        conn.send(_judge_within(task))


class _Pool:
    """`size` worker processes, each judging one task at a time; a worker still busy CHECK_SECONDS
    after it was sent a task (stuck in C code that ignores signals) is killed and replaced.

    forkserver, not fork: the trainer is multithreaded (torch, tokenizers, TRL's event loop), and
    a fork of a multithreaded process can inherit a lock held by another thread and hang. The
    fork server imports this module once; each worker is forked from it and then imports the
    parent's main module (multiprocessing's rule; `tina.train`: ~0.4 s), in the background.
    """

    def __init__(self, size: int):
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload([__name__])
        self._starting: dict = {}  # connection -> process, until the worker says it is ready
        self._idle: list = []  # (process, connection)
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> None:
        here, there = self._ctx.Pipe()
        process = self._ctx.Process(target=_serve, args=(there,), daemon=True, name="tina-math-check")
        process.start()
        there.close()
        self._starting[here] = process

    def _replace(self, process, conn) -> None:
        process.kill()
        process.join()
        conn.close()
        self._spawn()

    def close(self) -> None:
        for process, conn in [*self._idle, *((p, c) for c, p in self._starting.items())]:
            conn.close()  # a worker sees EOF and returns
            process.join(timeout=1)
            if process.is_alive():
                process.kill()
                process.join()
        self._idle, self._starting = [], {}

    def judge(self, tasks: list) -> list[tuple[Verdict, float]]:
        out: list = [None] * len(tasks)
        todo = deque(enumerate(tasks))
        busy: dict = {}  # connection -> (process, task index, time sent)
        while todo or busy:
            while todo and self._idle:
                process, conn = self._idle.pop()
                try:
                    conn.send(todo[0][1])
                except OSError:  # died while idle: replaced, the task stays queued
                    self._replace(process, conn)
                    continue
                busy[conn] = (process, todo[0][0], time.monotonic())
                todo.popleft()
            if not (busy or self._starting):  # no worker could start: judge the rest here
                for i, task in todo:
                    out[i] = _judge_here(task)
                break
            deadlines = [sent + CHECK_SECONDS for _, _, sent in busy.values()]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for conn in wait([*busy, *self._starting], timeout):
                if conn in self._starting:
                    process = self._starting.pop(conn)
                    try:
                        conn.recv()
                        self._idle.append((process, conn))
                    except (EOFError, OSError):  # failed to start: not replaced, or it would loop
                        process.join()
                        conn.close()
                    continue
                process, i, sent = busy.pop(conn)
                try:
                    out[i] = (conn.recv(), time.monotonic() - sent)
                    self._idle.append((process, conn))
                except (EOFError, OSError):  # crashed or killed (out of memory): scored as wrong
                    out[i] = (Verdict.WRONG, time.monotonic() - sent)
                    self._replace(process, conn)
            now = time.monotonic()
            for conn, (process, i, sent) in list(busy.items()):
                if now - sent >= CHECK_SECONDS:
                    del busy[conn]
                    out[i] = (Verdict.TIMEOUT, now - sent)
                    self._replace(process, conn)
        return out


def default_workers() -> int:
    """One worker per CPU this process may use, shared among the node's training processes
    (LOCAL_WORLD_SIZE, set by torchrun/accelerate), at most MAX_WORKERS; 0 (checks in the
    calling process) below MIN_POOL_CPUS.

    Measured on 2 shared cores (benchmarks/RESULTS.md), 2 workers halved a hostile step (24.4 ->
    12.5 s) but made a realistic one slower (0.25 -> 0.43 s: the checks take ~1 ms, a worker's
    round trip more, and the workers compete with the caller for the cores); realistic steps are
    the common case, so 2 CPUs check in-process. From 4 CPUs on, idle while the GPU waits for
    rewards, the pool is expected to win both (not measured here: no such machine).
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    n = min(MAX_WORKERS, cpus // local)
    return n if n >= MIN_POOL_CPUS else 0


# A step's 48-64 completions take 6-8 rounds at 8 workers (hostile: ~3-5 s instead of ~24 s); more
# workers mostly add memory (~60 MB each) and start-up.
MAX_WORKERS = 8
MIN_POOL_CPUS = 4
_workers: Optional[int] = None  # None: default_workers(), chosen at the first check
_pool: Optional[_Pool] = None
_log = logging.getLogger(__name__)


def set_workers(n: Optional[int]) -> None:
    """Check in n worker processes (n >= 1), in the calling process (0; off the main thread, in one
    worker process per calling thread), or as default_workers() (None).

    The pool starts at the next check; in the calling process the bound is a signal at 80% of
    CHECK_SECONDS, which a long C call or an overloaded machine can delay (measured: up to 1.25 s
    at load average 9 on 2 cores), while a worker that overruns is killed at CHECK_SECONDS.
    """
    global _pool, _workers
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ValueError(f"math-check workers must be an integer >= 0 (or None: default), got {n!r}")
    if _pool is not None:
        _pool.close()
        _pool = None
    _close_thread_pools(ended_only=False)
    _workers = n


def judge(tasks: list[tuple[str, Optional[str]]]) -> list[tuple[Verdict, float]]:
    """(verdict, seconds) for each (completion tail, gold) task, uncached, each bounded by CHECK_SECONDS.

    One caller at a time (TRL calls its reward functions one after another): the pool is not shared.
    """
    global _pool, _workers
    _close_thread_pools()  # the workers of threads that have ended
    if not tasks:
        return []
    if _workers is None:
        _workers = default_workers()
    if _workers and _pool is None:
        try:
            _pool = _Pool(_workers)
        except Exception as e:  # e.g. no forkserver here: checks still run, bounded by a signal
            _log.warning("math-check workers could not start (%s); checking in this process", e)
            _workers = 0
    if _pool is not None:
        return _pool.judge(tasks)
    if threading.current_thread() is not threading.main_thread():
        return _thread_pool().judge(tasks)
    _warm_up()
    return [_judge_here(task) for task in tasks]


# Checks asked off the main thread, one pool of one worker per thread. A signal cannot reach
# another thread, and every in-thread bound tried lost its grip: a trace function is unset for
# good by a timeout raised inside a finalizer (SymPy's caches run many), and it cannot stop a
# long C call (\\boxed{9^{9^{9^9}}} ran > 30 s). A process can always be killed.
_thread_pools: dict[threading.Thread, _Pool] = {}
_thread_pools_lock = threading.Lock()


def _close_thread_pools(ended_only: bool = True) -> None:
    with _thread_pools_lock:
        for thread in [t for t in _thread_pools if not (ended_only and t.is_alive())]:
            _thread_pools.pop(thread).close()


def _thread_pool() -> _Pool:
    with _thread_pools_lock:
        me = threading.current_thread()
        if me not in _thread_pools:
            _thread_pools[me] = _Pool(1)
        return _thread_pools[me]


_VERDICTS: OrderedDict = OrderedDict()  # (digest of tail, gold) -> Verdict, least recently used first


def _key(task: tuple[str, Optional[str]]) -> tuple:
    tail, gold = task  # a digest, so that the cache holds no 20k-character tails
    return hashlib.blake2b(tail.encode("utf-8", "surrogatepass"), digest_size=16).digest(), gold


def verdicts(contents: list[str], golds: list) -> list[Verdict]:
    """The verdict for each completion text against its gold; each check runs at most once.

    A new check is cut off at CHECK_SECONDS of wall time (as firmly as the module docstring says),
    its gold's parse included unless that gold was already parsed in the process that checks it; a
    cached one costs a hash of its tail.
    """
    tasks = [(c[-MAX_PARSE_CHARS:], None if g is None else str(g)) for c, g in zip(contents, golds)]
    keys = [_key(t) for t in tasks]
    found = {}
    for key in keys:
        if key in _VERDICTS:
            _VERDICTS.move_to_end(key)
            found[key] = _VERDICTS[key]
    new = {k: t for k, t in zip(keys, tasks) if k not in found}
    for key, (verdict, _) in zip(new, judge(list(new.values()))):
        found[key] = _VERDICTS[key] = verdict
        if len(_VERDICTS) > _CACHE_SIZE:
            _VERDICTS.popitem(last=False)
    return [found[k] for k in keys]
