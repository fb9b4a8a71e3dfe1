"""The rewards against the paper's definitions (tina/rewards.py docstrings), on hand-computed values."""

import math
import os
import random
import signal
import sys
import threading
import time

import pytest

from tina import math_check
from tina import rewards as R
from tina.rewards import (
    REWARD_NAMES,
    TIMEOUTS_METRIC,
    accuracy_reward,
    format_reward,
    get_reward,
    length_reward,
    reasoning_steps_reward,
    reward_params,
    tag_count_reward,
)


def conv(text):
    return [{"role": "assistant", "content": text}]


def test_names_and_lookup():
    assert REWARD_NAMES == (
        "accuracy", "cosine", "format", "length", "reasoning_steps", "repetition", "tag_count"
    )
    for name in REWARD_NAMES:
        assert get_reward(name).__name__ == f"{name}_reward"  # TRL logs rewards/<__name__>/mean
    assert reward_params("format") == {}
    assert reward_params("cosine") == {
        "min_value_wrong": 0.0, "max_value_wrong": -0.5, "min_value_correct": 0.5,
        "max_value_correct": 1.0, "max_len": 1000,
    }
    assert reward_params("repetition") == {"ngram_size": 3, "max_penalty": -1.0}


def test_get_reward_errors_name_the_key_and_the_allowed_values():
    with pytest.raises(ValueError) as e:
        get_reward("acuracy")
    assert "'acuracy'" in str(e.value) and all(n in str(e.value) for n in REWARD_NAMES)
    with pytest.raises(ValueError) as e:
        reward_params("nope")
    assert "'nope'" in str(e.value)
    with pytest.raises(ValueError) as e:
        get_reward("cosine", max_length=3584)
    assert "'max_length'" in str(e.value) and "max_len" in str(e.value) and "min_value_wrong" in str(e.value)
    with pytest.raises(ValueError) as e:
        get_reward("format", weight=2)
    assert "'weight'" in str(e.value) and "none" in str(e.value)
    with pytest.raises(ValueError, match="max_penalty"):
        get_reward("repetition", max_penalty=0.5)
    with pytest.raises(ValueError, match="ngram_size"):
        get_reward("repetition", ngram_size=0)
    with pytest.raises(ValueError, match="max_len"):
        get_reward("cosine", max_len=0)


def test_format():
    good = "<think>\nreason\n</think>\n<answer>\n3\n</answer>"
    assert format_reward([good, "reason\n</think>\n\\boxed{3}"]) == [1.0, 1.0]
    assert format_reward([
        "no tags", "<think>\nreason</think>\n", "a\n</think>\nb\n</think>\n", ""
    ]) == [0.0, 0.0, 0.0, 0.0]


def test_tag_count():
    assert tag_count_reward([
        "nothing", "<think>\nonly open", "only close\n</think>\n", "<think>\nboth\n</think>\n",
        "<think>\n<think>\ntwice open\n</think>\n",
    ]) == [0.0, 0.5, 0.5, 1.0, 0.5]


def test_reasoning_steps():
    assert reasoning_steps_reward([
        "no markers at all",
        "Step 1: add",
        "Step 1: add. Step 2: carry",
        "First, a. Second, b. Next, c. Finally, d.",
        "intro\n- bullet\n* star\nStep 7: go",
    ]) == [0.0, pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0, 1.0]
    # The paper's regex has no re.MULTILINE: a numbered list counts only at the text's start.
    assert reasoning_steps_reward(["1. a\n2. b\n3. c", "x\n1. a\n2. b"]) == [pytest.approx(1 / 3), 0.0]


def test_accuracy():
    completions = [
        "so \\boxed{\\frac{1}{2}}",  # equivalent to 0.5
        "\\boxed{68}",
        "\\boxed{67}",
        "no answer here",
        "we get $68$",  # neither boxed nor anchored ("answer is"): open-r1's config finds nothing
        "The final answer is $68$",
    ]
    gold = ["$0.5$", "We find $x = 68$, so the answer is $\\boxed{68}$."] + ["$68$"] * 4
    assert accuracy_reward(completions, solution=gold) == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def test_accuracy_skips_unparseable_gold():
    assert accuracy_reward(["\\boxed{1}"] * 3, solution=["no math at all", None, ""]) == [None] * 3


def test_rewards_need_the_solution_column():
    with pytest.raises(ValueError, match="solution"):
        accuracy_reward(["\\boxed{1}"])
    with pytest.raises(ValueError, match="2 completions but 1 solutions"):
        accuracy_reward(["a", "b"], solution=["$1$"])


def test_cosine_paper_values():
    cosine = get_reward("cosine")  # paper: correct 0.5..1.0, wrong 0.0 (short) .. -0.5 (at L)
    right, wrong = "\\boxed{3}", "\\boxed{4}"
    assert cosine(["", "x" * 1000, "x" * 500], solution=["$3$"] * 3) == pytest.approx([0.0, -0.5, -0.25])
    n = len(right)
    at_l = get_reward("cosine", max_len=n)
    assert at_l([right, wrong], solution=["$3$"] * 2) == pytest.approx([0.5, -0.5])
    half = get_reward("cosine", max_len=2 * n)  # cos(pi/2) = 0: the midpoints
    assert half([right, wrong], solution=["$3$"] * 2) == pytest.approx([0.75, -0.25])
    near_zero = get_reward("cosine", max_len=10**9)
    assert near_zero([right, wrong], solution=["$3$"] * 2) == pytest.approx([1.0, 0.0])
    # Not clamped, as in the paper's code: at 2L the cosine is back at its len-0 value.
    assert get_reward("cosine", max_len=n)([right + " " * n], solution=["$3$"]) == pytest.approx([1.0])


def test_cosine_open_r1_defaults_give_the_opposite_wrong_ordering():
    open_r1 = get_reward("cosine", min_value_wrong=-1.0, max_value_wrong=-0.5, max_len=100)
    assert open_r1(["", "x" * 100], solution=["$3$"] * 2) == pytest.approx([-1.0, -0.5])


def test_cosine_unparseable_gold_scores_one():
    assert get_reward("cosine")(["\\boxed{3}", "x" * 1000], solution=["no math", None]) == [1.0, 1.0]


def test_repetition():
    rep = get_reward("repetition")
    # "a b c a b c": 3-grams abc, bca, cab, abc -> 3 unique of 4 -> -1 * (1 - 3/4)
    out = rep(["a b c a b c", "A B C a b c", "one two three four", "a b", ""])
    assert out == pytest.approx([-0.25, -0.25, 0.0, 0.0, 0.0])
    assert math.copysign(1.0, out[2]) == 1.0  # 0.0, not -0.0
    assert get_reward("repetition", max_penalty=-0.5)(["a b c a b c"]) == pytest.approx([-0.125])
    # bigrams of "a a a a": 3 x (a a), 1 unique -> -(1 - 1/3)
    assert get_reward("repetition", ngram_size=2)(["a a a a"]) == pytest.approx([-2 / 3])


def test_length_kimi_on_one_group():
    wrong9 = "\\boxed{4}"  # len 9, lambda 0.5 -> wrong: min(0, 0.5) = 0
    right14 = "\\boxed{3}" + " " * 5  # len 14, lambda 0.5 - 5/20 = 0.25
    right29 = "\\boxed{3}" + " " * 20  # len 29, lambda 0.5 - 20/20 = -0.5
    out = length_reward([wrong9, right14, right29], solution=["$3$"] * 3)
    assert out == pytest.approx([0.0, 0.25, -0.5])
    # a long wrong answer keeps its negative lambda
    assert length_reward([right14, wrong9 + " " * 20], solution=["$3$"] * 2) == pytest.approx([0.5, -0.5])


def test_length_all_equal_is_zero_and_unparseable_gold_counts_as_correct():
    assert length_reward(["\\boxed{3}", "\\boxed{4}"], solution=["$3$"] * 2) == [0.0, 0.0]
    assert length_reward(["ab", "abcd"], solution=["no math"] * 2) == pytest.approx([0.5, -0.5])


def test_length_groups_by_prompt():
    p1 = [{"role": "user", "content": "q1"}]
    p2 = [{"role": "user", "content": "q2"}]
    completions = ["\\boxed{3}", "\\boxed{7}", "\\boxed{3}" + " " * 10, "\\boxed{7}" + " " * 2]
    gold = ["$3$", "$7$", "$3$", "$7$"]
    grouped = length_reward(completions, solution=gold, prompts=[p1, p2, p1, p2])
    assert grouped == pytest.approx([0.5, 0.5, -0.5, -0.5])
    # without prompts the whole call is one group: min 9, max 19
    whole = length_reward(completions, solution=gold)
    assert whole == pytest.approx([0.5, 0.5, -0.5, 0.5 - 2 / 10])


def test_plain_and_conversational_agree():
    texts = ["<think>\nStep 1: x\n</think>\n\\boxed{3}", "a b c a b c", "\\boxed{4}" + " " * 30]
    kw = {"solution": ["$3$"] * 3, "prompts": ["p"] * 3, "trainer_state": None, "extra": [1, 2, 3]}
    for name in REWARD_NAMES:
        f = get_reward(name)
        assert f(texts, **kw) == f([conv(t) for t in texts], **kw), name
    # the last message of a longer conversation is the one scored
    assert format_reward([[{"role": "user", "content": "x\n</think>\n"}, {"role": "assistant", "content": "no"}]]) == [0.0]


GARBAGE = [
    None, "", 0, [], [{}], [{"role": "assistant", "content": None}], [{"role": "assistant"}],
    "\x00\xff\ud800\U0001f600",
    bytes(random.Random(0).getrandbits(8) for _ in range(20_000)).decode("latin-1"),
    "x" * 1_000_000,
    "\\boxed{" + "{" * 1000 + "1" + "}" * 1000 + "}",
    "\\boxed{" + "}" * 50 + "{" * 50,
    "\\boxed{\\frac{\\frac{}{}}{\\sqrt[}{}}\\left(\\right]}",
    "\\boxed{\\input{/etc/passwd}\\def\\x{\\x}\\x}",
    "$$$$\\boxed{}\\boxed{\\boxed{\\boxed{1}}}",
    "答案是 \\boxed{六十八}",
]


def _check_shape(name, out, n):
    assert isinstance(out, list) and len(out) == n
    for r in out:
        assert r is None if r is None else isinstance(r, float), (name, r)
        assert r is None or math.isfinite(r)
        assert r is not None or name == "accuracy"


def test_garbage_never_raises():
    golds = ["$68$", "no math", None, "\\boxed{" * 20, 68]
    for name in REWARD_NAMES:
        f = get_reward(name)
        for gold in golds:
            out = f(GARBAGE, solution=[gold] * len(GARBAGE), prompts=["p"] * len(GARBAGE))
            _check_shape(name, out, len(GARBAGE))


def test_random_fuzz_never_raises():
    rng = random.Random(1234)
    pieces = ["\\boxed{", "{", "}", "\\frac", "\\sqrt", "1", "x", "^", "_", "$", "\\\\", "\n</think>\n",
              "<think>\n", "Step 1:", "\n-", "First,", " ", "=", "\\pi", "é", "\x00", "\\left(", "\\right)"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(150)]
    for name in REWARD_NAMES:
        out = get_reward(name)(texts, solution=["$\\frac{1}{2}$"] * len(texts))
        _check_shape(name, out, len(texts))


def test_slow_math_is_cut_off_and_signal_handler_restored(in_process):
    before = signal.getsignal(signal.SIGALRM)
    start = time.monotonic()
    assert accuracy_reward(["\\boxed{(10^{10})!}"], solution=["$68$"]) == [0.0]
    assert time.monotonic() - start < math_check.CHECK_SECONDS + 2
    assert signal.getsignal(signal.SIGALRM) is before


class _SlowFinalizer:
    def __del__(self):
        time.sleep(0.05)  # an alarm landing here raises where Python ignores exceptions


def _half_the_time_in_finalizers() -> str:
    for _ in range(100):  # ~10 s unbounded
        _SlowFinalizer()
        time.sleep(0.05)
    return "ran to the end"


def test_an_alarm_lost_in_a_finalizer_fires_again():
    before, hook = signal.getsignal(signal.SIGALRM), sys.unraisablehook
    with pytest.raises(math_check._Timeout):
        math_check._within(0.05, _half_the_time_in_finalizers)
    assert signal.getsignal(signal.SIGALRM) is before and sys.unraisablehook is hook
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def _accuracy_in_a_thread(texts, gold):
    """accuracy_reward(texts) called off the main thread, once its worker is up: (rewards, seconds)."""
    out = {}

    def run():
        math_check.judge([("\\boxed{1}", "$1$")])  # starts this thread's worker: not the checks' time
        start = time.monotonic()
        out["r"] = accuracy_reward(texts, solution=[gold] * len(texts))
        out["t"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "a check off the main thread ran unbounded"
    return out["r"], out["t"]


def test_off_the_main_thread(in_process, fresh_cache):
    # math-verify's own timeouts raise ValueError off the main thread; ours must not, and must bound,
    # a long C call included (\\boxed{9^{9^{9^9}}}: > 30 s under a trace-function bound).
    texts = ["\\boxed{0.5}", "\\boxed{\\sum_{k=1}^{3000} k^{k}}", "\\boxed{9^{9^{9^9}}}"]
    rewards, seconds = _accuracy_in_a_thread(texts, "$1/2$")
    assert rewards == [1.0, 0.0, 0.0]
    assert seconds < 2 * (math_check.CHECK_SECONDS + TOLERANCE) + 1
    workers = list(math_check._thread_pools.values())
    assert len(workers) == 1  # the thread's own
    math_check.judge([("\\boxed{2}", "$2$")])  # the main thread checks in-process ...
    assert math_check._thread_pools == {}  # ... and reaps the ended thread's worker


MATH_REWARDS = ("accuracy", "length", "cosine")
# Tolerance over CHECK_SECONDS for one completion's reward time: the bound itself stops work at 0.8 s
# (signal) or 1.0 s (worker killed); the extra 0.5 s absorbs a test machine shared by other jobs,
# where the signal's delivery or the process's next time slice can come late (0.2 s seen at load 9).
TOLERANCE = 0.5


@pytest.fixture
def fresh_cache():
    math_check._VERDICTS.clear()  # a verdict from an earlier test would cost nothing here
    yield


def _start(workers):
    math_check.set_workers(workers)
    _ready()


def _ready():
    math_check.judge([("\\boxed{1}", "$1$")])  # the pool starts at the first check
    while math_check._pool is not None and math_check._pool._starting:  # until every worker is up
        math_check.judge([("\\boxed{1}", "$1$")] * 2)


@pytest.fixture
def in_process():
    _start(0)
    yield
    math_check.set_workers(None)


@pytest.fixture(params=[0, 2], ids=["in-process", "2-workers"])
def workers(request):
    _start(request.param)
    yield request.param
    math_check.set_workers(None)


@pytest.fixture
def pool():
    """A 2-worker pool, every worker up. Kept from one pool test to the next (a start costs seconds
    here) unless a test run in between, in whatever order, closed or resized it."""
    if math_check._pool is None or math_check._workers != 2:
        _start(2)
    else:
        _ready()  # the kill test leaves a replacement worker starting
    yield math_check._pool


@pytest.fixture(scope="module", autouse=True)
def _no_pool_left():
    yield
    math_check.set_workers(None)


# (completion, whether its check runs past the bound) for the worst cases known
HOSTILE = [
    ("\\boxed{9^{9^{9^9}}}", True),
    ("\\boxed{(10^{10})!}", True),
    ("\\boxed{7^{10^{8}}}", True),
    ("\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}", True),
    ("\\boxed{\\{" + ",".join(str(i) for i in range(3000)) + "\\}}", True),
    ("\\boxed{\\sum_{k=1}^{3000} k^{k}}", True),
    ("\\boxed{68}" + "x" * 1_000_000, False),  # only the last MAX_PARSE_CHARS are read: no answer
    (bytes(random.Random(0).getrandbits(8) for _ in range(100_000)).decode("latin-1"), False),
]


def test_no_completion_costs_more_than_the_bound_however_many_rewards_score_it(fresh_cache, workers):
    cosine = get_reward("cosine")
    for text, slow in HOSTILE:
        logged = {}
        start = time.monotonic()
        assert accuracy_reward([text], solution=["$68$"], log_metric=logged.__setitem__) == [0.0]
        assert cosine([text], solution=["$68$"], log_metric=logged.__setitem__)[0] <= 0.0
        length_reward([text, "\\boxed{68}"], solution=["$68$"] * 2, log_metric=logged.__setitem__)
        elapsed = time.monotonic() - start
        assert elapsed <= math_check.CHECK_SECONDS + TOLERANCE, (text[:40], elapsed)
        # the verdict, timeout included, is computed once and counted by each reward that uses it
        assert logged == {TIMEOUTS_METRIC.format(reward=f"{name}_reward"): float(slow) for name in MATH_REWARDS}, text[:40]


def test_timeouts_metric_is_logged_on_every_call_and_counts_completions(fresh_cache):
    logged = []
    log = lambda name, value: logged.append((name, value))  # noqa: E731
    texts = ["\\boxed{68}", "\\boxed{(10^{10})!}", "\\boxed{9^{9^{9^9}}}", "\\boxed{67}"]
    assert accuracy_reward(texts, solution=["$68$"] * 4, log_metric=log) == [1.0, 0.0, 0.0, 0.0]
    assert accuracy_reward(texts[:1], solution=["$68$"], log_metric=log) == [1.0]
    assert logged == [("rewards/accuracy_reward/timeouts", 2.0), ("rewards/accuracy_reward/timeouts", 0.0)]
    # rewards without math-verify log nothing
    for name in ("format", "tag_count", "reasoning_steps", "repetition"):
        get_reward(name)(texts, solution=["$68$"] * 4, log_metric=log)
    assert len(logged) == 2


def test_a_gold_too_slow_to_parse_is_unparseable_not_a_timeout(fresh_cache):
    gold = "$" + "{" * 5000 + "1" + "}" * 5000 + "$"
    logged = {}
    out = accuracy_reward(["\\boxed{1}", "\\boxed{2}"], solution=[gold] * 2, log_metric=logged.__setitem__)
    assert out == [None, None]
    assert logged == {"rewards/accuracy_reward/timeouts": 0.0}


def test_worker_pool_gives_the_serial_verdicts(fresh_cache, pool):
    texts = GARBAGE + ["\\boxed{68}", "\\boxed{\\frac{136}{2}}", "The final answer is $67$", "\\boxed{(10^{10})!}"]
    gold = ["$68$"] * len(texts)
    in_pool = {name: get_reward(name)(texts, solution=gold) for name in MATH_REWARDS}
    assert in_pool["accuracy"][-4:] == [1.0, 1.0, 0.0, 0.0]
    tasks = [(R._text(t)[-math_check.MAX_PARSE_CHARS:], g) for t, g in zip(texts, gold)]
    math_check._warm_up()  # as judge() does before checking in this process: math-verify's first parse is slow
    assert [v for v, _ in math_check.judge(tasks)] == [math_check._judge_here(t)[0] for t in tasks]


def test_worker_pool_bounds_checks_off_the_main_thread(fresh_cache, pool):
    # In-process, off the main thread only a trace function bounds a check, and it cannot stop
    # CPython's power loop (\\boxed{9^{9^{9^9}}} ran > 30 s there); a worker's signal can.
    rewards, seconds = _accuracy_in_a_thread(["\\boxed{9^{9^{9^9}}}", "\\boxed{0.5}"], "$1/2$")
    assert rewards == [0.0, 1.0]
    assert seconds <= math_check.CHECK_SECONDS + TOLERANCE


def test_worker_pool_kills_and_replaces_a_worker_that_ignores_the_alarm(pool):
    # A stopped process stands for one stuck in a C call that never checks for signals.
    (stuck, _), (other, _) = pool._idle
    os.kill(stuck.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        tasks = [("\\boxed{68}", "$68$"), ("\\boxed{67}", "$68$"), ("\\boxed{68}", "$68$")]
        out = math_check.judge(tasks)
        # the idle list is a stack: the stopped worker (first in it) is sent the second task
        assert [v for v, _ in out] == [math_check.Verdict.CORRECT, math_check.Verdict.TIMEOUT, math_check.Verdict.CORRECT]
        assert out[1][1] <= math_check.CHECK_SECONDS + TOLERANCE
        assert not stuck.is_alive() and other.is_alive()
        assert time.monotonic() - start < 30  # the batch does not wait for the replacement's start-up
    finally:
        if stuck.is_alive():
            os.kill(stuck.pid, signal.SIGKILL)
    pids = {process.pid for process, _ in pool._idle} | {p.pid for p in pool._starting.values()}
    assert len(pids) == 2 and stuck.pid not in pids


def test_default_workers_follow_the_cpus_of_this_process(monkeypatch):
    cpus = len(os.sched_getaffinity(0))
    expected = min(math_check.MAX_WORKERS, cpus)
    assert math_check.default_workers() == (expected if expected >= math_check.MIN_POOL_CPUS else 0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cpus))  # one training process per CPU: none left over
    assert math_check.default_workers() == 0


def test_set_workers_checks_its_argument():
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ValueError, match="workers must be an integer >= 0"):
            math_check.set_workers(bad)
