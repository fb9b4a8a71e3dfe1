"""analysis.verdicts and analysis.compare: calibrated on synthetic outcomes with a known truth
(tests/synthetic_outcomes.py), pairing by problem identity, seeds in the interval, the command line.

Each rate is checked against its nominal value within 3.5 binomial standard deviations of the
rate (a seeded RNG, so a pass is reproducible; the tolerance is what a correct method needs)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis import verdicts as vd
from tina import power as tp
from tests.helpers import ROOT
from tests.synthetic_outcomes import ids, simulate, write_run

REPS = 2000


def _tol(rate: float, reps: int = REPS) -> float:
    return 3.5 * math.sqrt(rate * (1 - rate) / reps)


def test_one_seed_is_the_paired_t_test():
    rng = np.random.default_rng(0)
    a, b = simulate(rng, 1, 60, 4, delta=0.05)
    r = vd.paired([a[0]], [b[0]])
    t = stats.ttest_rel(a[0, 0], b[0, 0])
    ci = t.confidence_interval(0.95)
    assert r["p"] == pytest.approx(t.pvalue, rel=1e-9)
    assert (r["low"], r["high"]) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))


@pytest.mark.parametrize("n,k", [(500, 4), (30, 8)])
def test_identical_arms_give_false_verdicts_at_the_nominal_rate(n, k):
    rng = np.random.default_rng(n)
    a, b = simulate(rng, REPS, n, k)
    r = vd.paired([a], [b])
    false = np.mean(r["p"] < vd.ALPHA)
    assert abs(false - vd.ALPHA) < _tol(vd.ALPHA), false
    cover = np.mean((r["low"] <= 0) & (0 <= r["high"]))
    assert abs(cover - vd.LEVEL) < _tol(vd.LEVEL), cover


def test_power_and_coverage_at_a_known_difference_match_theory():
    n, k, delta = 500, 4, 0.04
    rng = np.random.default_rng(7)
    a, b = simulate(rng, REPS, n, k, delta=delta)
    r = vd.paired([a], [b])
    # theory: d_i = two independent Binomial(k, p)/k means, p ~ U(0.15, 0.85) and p + delta;
    # E[p(1-p)] = 1/4 - Var(p) = 1/4 - 0.7^2/12, and E[(p+d)(1-p-d)] = that - d^2
    e = 0.25 - 0.7 ** 2 / 12
    se = math.sqrt((2 * e - delta ** 2) / k / n)
    z = stats.norm.ppf(1 - vd.ALPHA / 2)
    power = stats.norm.cdf(delta / se - z) + stats.norm.cdf(-delta / se - z)
    seen = np.mean((r["p"] < vd.ALPHA) & (r["delta"] > 0))
    assert abs(seen - power) < _tol(power), (seen, power)
    cover = np.mean((r["low"] <= delta) & (delta <= r["high"]))
    assert abs(cover - vd.LEVEL) < _tol(vd.LEVEL), cover
    assert tp.detectable(se) == pytest.approx((z + stats.norm.ppf(tp.POWER)) * se)


def test_seeds_widen_the_interval_and_keep_it_honest():
    """Runs move with their training seed: ignoring that (a paired t-test on seed-averaged
    accuracies) covers the truth far less than 95%; the seed term brings coverage back."""
    n, k, delta, seeds = 200, 4, 0.02, 3
    rng = np.random.default_rng(11)
    a, b = simulate(rng, REPS, n, k, seeds=seeds, delta=delta, seed_sd=0.03)
    r = vd.paired([a], [b])
    naive = stats.ttest_rel(a.mean(1), b.mean(1), axis=-1).confidence_interval(0.95)
    assert np.all(r["high"] - r["low"] >= naive.high - naive.low - 1e-12)
    ours = np.mean((r["low"] <= delta) & (delta <= r["high"]))
    theirs = np.mean((naive.low <= delta) & (delta <= naive.high))
    assert theirs < 0.8, theirs
    assert ours >= vd.LEVEL - _tol(vd.LEVEL), ours


def test_several_arms_hold_the_family_wise_error():
    n, k, arms = 200, 4, 4
    rng = np.random.default_rng(3)
    p = rng.uniform(0.15, 0.85, size=(REPS, 1, n))
    base = rng.binomial(k, np.broadcast_to(p, (REPS, 1, n))) / k
    pv = np.stack([vd.paired([rng.binomial(k, np.broadcast_to(p, (REPS, 1, n))) / k], [base])["p"]
                   for _ in range(arms)], axis=1)
    raw_any = np.mean((pv < vd.ALPHA).any(1))
    adjusted_any = np.mean([(vd.adjust(row) < vd.ALPHA).any() for row in pv])
    assert raw_any > vd.ALPHA + _tol(vd.ALPHA)  # uncorrected, four arms inflate it
    assert adjusted_any < vd.ALPHA + _tol(vd.ALPHA), adjusted_any
    assert np.allclose(vd.adjust(pv[0]), multipletests(pv[0], method="holm-sidak")[1])


# ----------------------------------------------------------------------------- on disk, from the CLI
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "analysis.compare", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def _sweep(root, n=100, seeds=(1, 2), ranks=(8, 32), shuffle=None, id_sets=None, benchmark="toy", legacy=False):
    rng = np.random.default_rng(5)
    j, truth = 0, {}
    for rank in ranks:
        for s in seeds:
            values = rng.binomial(4, np.linspace(0.2, 0.8, n) + (0.1 if rank == 8 else 0)) / 4
            pid = (id_sets or {}).get((rank, s), ids(n))
            truth[(rank, s)] = dict(zip(pid, values))
            if shuffle == (rank, s):
                order = rng.permutation(n)
                values, pid = values[order], [pid[i] for i in order]
            write_run(root / f"{j}_lora.rank-{rank}__train.seed-{s}", [f"lora.rank={rank}", f"train.seed={s}"],
                      values, None if legacy else pid, benchmark=benchmark)
            j += 1
    return truth


def test_cli_json_pairs_by_problem_id_not_position(tmp_path):
    """One run's problems are written in another order: its interval is the paired t-test's on the
    answers matched by id (by position the mean difference would agree, the interval not)."""
    truth = _sweep(tmp_path / "sweep", seeds=(1,), shuffle=(8, 1))
    out = _cli(tmp_path / "sweep", "--json")
    assert out.returncode == 0, out.stderr
    (c,) = json.loads(out.stdout)["comparisons"]
    assert (c["axis"], c["arm"], c["baseline"], c["benchmark"]) == ("lora.rank", "lora.rank=8", "lora.rank=32", "toy")
    keys = list(truth[(32, 1)])
    arm, base = np.array([truth[(8, 1)][i] for i in keys]), np.array([truth[(32, 1)][i] for i in keys])
    t = stats.ttest_rel(arm, base)
    ci = t.confidence_interval(0.95)
    assert c["delta"] == pytest.approx(100 * (arm - base).mean())
    assert c["ci"] == [pytest.approx(100 * ci.low), pytest.approx(100 * ci.high)] and c["p"] == pytest.approx(t.pvalue)
    assert (c["n_problems"], c["n_samples"], c["n_seeds"]) == (100, 4, 1)
    assert c["verdict"] == ("indistinguishable" if c["p_adjusted"] >= 0.05 else "better" if c["delta"] > 0 else "worse")
    out = _cli(tmp_path / "sweep", "--baseline", "lora.rank=8")
    assert out.returncode == 0 and "lora.rank=32" in out.stdout and "holm-sidak" in out.stdout.lower()


def test_different_problem_sets_are_refused_in_one_line(tmp_path):
    _sweep(tmp_path / "sweep", id_sets={(8, 1): ids(100, tag="other")})
    out = _cli(tmp_path / "sweep")
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "problem sets differ" in out.stderr, out.stderr


def test_legacy_records_pair_by_position_only_when_settings_and_counts_agree(tmp_path):
    _sweep(tmp_path / "same", legacy=True)
    assert _cli(tmp_path / "same", "--json").returncode == 0
    _sweep(tmp_path / "other", legacy=True)
    write_run(tmp_path / "other" / "9_lora.rank-8__train.seed-3", ["lora.rank=8", "train.seed=3"],
              np.ones(90), None)
    out = _cli(tmp_path / "other")
    assert out.returncode == 2 and "cannot be paired" in out.stderr


def test_heldout_is_compared_where_there_is_no_evaluation_and_bad_baseline_is_refused(tmp_path):
    _sweep(tmp_path / "sweep", ranks=(4, 8, 32), benchmark=None)
    out = json.loads(_cli(tmp_path / "sweep", "--json").stdout)
    assert {(c["arm"], c["benchmark"]) for c in out["comparisons"]} == {("lora.rank=4", "heldout"),
                                                                         ("lora.rank=8", "heldout")}
    assert all(c["baseline"] == "lora.rank=32" for c in out["comparisons"])  # the paper's default
    bad = _cli(tmp_path / "sweep", "--baseline", "lora.rank=5")
    assert bad.returncode == 2 and "no arm has it (lora.rank takes 4, 8, 32)" in bad.stderr, bad.stderr


# ----------------------------------------------------------------------------- tina.plan --detect
def _plan(capsys, *args, seeds="train.seed=1,2"):
    from tina.plan import main

    rc = main(["-m", "lora.rank=8,32", seeds, "eval.n_samples=2", "eval.seeds=[0]", "--json", *args])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if rc == 0 else out.err)


def test_plan_detect_is_what_a_sweep_of_that_size_finds_80_percent_of_the_time(capsys, tmp_path):
    """One training seed per arm: there the plan's model and the analysis are the same test. (With
    2-10 seeds the analysis also estimates the seed variance from them, and finds the planned
    difference less often: tina/power.py SEEDS_NOTE.)"""
    rc, p = _plan(capsys, "--detect", "3", seeds="train.seed=1")
    assert rc == 0, p
    toy = next(r for r in p["detect"]["rows"] if r["measure"] == "toy")
    assert (toy["n_problems"], toy["samples_per_problem"], toy["seeds"]) == (200, 2, 1) and toy["assumed"] == ["toy"]
    # simulate the worst case it assumes (every problem solved half the time) at that difference
    rng = np.random.default_rng(2)
    d = toy["detectable_pp"] / 100
    arm = rng.binomial(2, 0.5 + d, size=(REPS, 1, 200)) / 2
    base = rng.binomial(2, 0.5, size=(REPS, 1, 200)) / 2
    found = np.mean(vd.paired([arm], [base])["p"] < vd.ALPHA)
    assert abs(found - 0.8) < _tol(0.8), found
    assert toy["n_samples_needed"] > 2 and toy["seeds_needed"] > 2  # 3 pp is below what this sweep sees
    # a base model that solves each problem always or never leaves only seeds... and the answer shrinks
    write_run(tmp_path / "base", [], [0.0, 1.0] * 100, ids(200), n_samples=8)
    rc, q = _plan(capsys, "--detect", "3", "--base-eval", str(tmp_path / "base"), seeds="train.seed=1")
    easy = next(r for r in q["detect"]["rows"] if r["measure"] == "toy")
    assert rc == 0 and easy["assumed"] == [] and easy["detectable_pp"] < toy["detectable_pp"] / 5


def test_plan_detect_refuses_bad_input_in_one_line(capsys, tmp_path):
    for args in (["--detect", "0"], ["--detect", "3", "--base-eval", str(tmp_path / "nothing")]):
        rc, err = _plan(capsys, *args)
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
