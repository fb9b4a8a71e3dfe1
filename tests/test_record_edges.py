"""The run record at its edges: any path or value in an override, any number in a record.

* Every override tina builds from data (tina/overrides.py) is read back by Hydra's own parser, and
  by a real composition, as exactly the value it came from, over a corpus of awkward names.
* A corpus of hostile metrics.jsonl and summary.json files (generated here) goes through every
  reader (tina.status, tina.phase / analysis.phase, tina.plan --from, analysis.report): each
  reader ends normally and each damaged run gets a note, the others their numbers.
* A YAML file with a Python tag, and HTML in a run's values, are data, not code.
(Real reruns in such directories: tests/test_rerun_fates.py.)
"""

from __future__ import annotations

import json
import math
import shlex
import warnings
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from analysis.report import main as report_main
from tests.helpers import done, make_run, rows
from tina import costmodel
from tina import run_dir as rd
from tina.embedded import TINY_DIR
from tina.metrics import read_metrics
from tina.overrides import command, override, parsed, quote
from tina.phase import main as phase_main
from tina.plan import compose_sweep
from tina.plan import main as plan_main
from tina.status import main as status_main
from tina.sweep import main as sweep_main

# Names a sweep directory, a search space's categorical value or a recorded value may have.
AWKWARD = [
    "a,b", "a, b", "f(x)", "(paren", "paren)", "[1,2]", "[x", "{a:1}", "}", "it's", "say \"hi\"",
    "'both\" quotes'", "back\\slash", "trailing\\", "\\'", "sp ace", " lead space", "trail space ",
    "a=b", "=", "key=v,w", "$HOME", "x${y}z", "${oc.env:HOME}", "é", "Zürich/日本", "-lead-dash",
    "--flag", "+plus", "~tilde", "a:b", "tab\tin", "new\nline", "null", "true", "10", "1e-3", "nan",
    "inf", "[]", "", "#hash", "a;b|c&d", "*glob?", "%percent", "!bang", "@at",
]
CORPUS_SIZE = len(AWKWARD)


def test_awkward_names_round_trip_through_hydra():
    assert CORPUS_SIZE == 47
    bare_broken = 0
    for name in AWKWARD:
        text = override("k", name)
        value = parsed(text)
        # what a job sees: OmegaConf resolves an unescaped ${...}
        assert OmegaConf.create({"k": value}).k == name, (name, text)
        try:
            bare_broken += OmegaConf.create({"k": parsed(f"k={name}")}).k != name
        except Exception:
            bare_broken += 1
        assert shlex.split(command("python", "-m", "x", text)) == ["python", "-m", "x", text]
    # the corpus is awkward: spelled bare, most of it is refused or misread
    assert bare_broken >= 30, bare_broken  # 34 of 47 when this was written
    # plain values keep their plain spelling (lora.rank=8, a plain path)
    assert override("lora.rank", 8) == "lora.rank=8" and override("p", "/tmp/x/0_a-1") == "p=/tmp/x/0_a-1"
    for v in (0, -3, 1e-05, 0.1, 2.5e10, True, False, None, math.inf, -math.inf):
        assert parsed(f"k={quote(v)}") == v
    assert math.isnan(parsed(f"k={quote(math.nan)}"))


def test_awkward_sweep_dirs_compose_as_hydra_sweep_dir(tmp_path):
    """The override tina.sweep rerun builds for the sweep directory, through a real composition."""
    for name in AWKWARD:
        if not name.strip() or "\n" in name or "/" in name:
            continue  # not one path component
        sweep = str(tmp_path / name)
        _, cfg, jobs = compose_sweep([override("hydra.sweep.dir", sweep), "lora.rank=4,8"], multirun=True)
        assert cfg.hydra.sweep.dir == sweep and len(jobs) == 2


# ----------------------------------------------------------------------------- hostile numbers
def _lines(records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


GOOD = rows(20)


def _with(i: int, **kw) -> list[dict]:
    out = [dict(r) for r in GOOD]
    out[i].update(kw)
    return out


# name -> (metrics.jsonl text or bytes, what the run's note says; None: no note, by design)
HOSTILE_METRICS = {
    "nan_value": (_lines(_with(5, reward=math.nan)), "1 NaN value(s), read as missing"),
    "inf_tokens": (_lines(_with(5, num_tokens=math.inf)), "num_tokens: 1 value(s) not a finite number"),
    "minus_inf": (_lines(_with(5, loss=-math.inf)), "loss: 1 value(s) not a finite number"),
    "infinity_string": (_lines(_with(19, num_tokens="Infinity")), "num_tokens: 1 value(s) not a finite number"),
    "value_10e400": (_lines(_with(5, num_tokens=10**400)), "num_tokens: 1 value(s) not a finite number"),
    "value_string": (_lines(_with(5, reward="high")), "reward: 1 value(s) not a finite number"),
    "value_list": (_lines(_with(5, reward=[1, 2])), "reward: 1 value(s) not a finite number"),
    "value_object": (_lines(_with(5, reward={"a": 1})), "reward: 1 value(s) not a finite number"),
    "value_bool": (_lines(_with(5, reward=True)), "reward: 1 value(s) not a finite number"),
    "value_null": (_lines(_with(5, reward=None)), None),  # null is a missing value, as documented
    "value_1.7e308": (_lines(_with(5, reward=1.7e308)), None),  # huge but finite: a number
    "step_2pow70": (_lines(GOOD + [{**GOOD[-1], "step": 2**70}]), "line 21 (step 1180591620717411303424)"),
    "step_2pow63": (_lines(GOOD + [{**GOOD[-1], "step": 2**63}]), "line 21 (step 9223372036854775808)"),
    "step_negative": (_lines([{**GOOD[0], "step": -3}] + GOOD), "line 1 (step -3)"),
    "step_string": (_lines(GOOD[:5] + [{**GOOD[5], "step": "6"}] + GOOD[6:]), "line 6 (step '6')"),
    "step_null": (_lines(GOOD[:5] + [{**GOOD[5], "step": None}] + GOOD[6:]), "line 6 (step None)"),
    "step_infinity": (_lines(GOOD[:5]) + '{"step": Infinity}\n' + _lines(GOOD[6:]), "line 6 (step inf)"),
    "step_nan": (_lines(GOOD[:5]) + '{"step": NaN}\n' + _lines(GOOD[6:]), "line 6 (step nan)"),
    "step_fraction": (_lines(GOOD[:5] + [{**GOOD[5], "step": 6.5}] + GOOD[6:]), "line 6 (step 6.5)"),
    "step_bool": (_lines(GOOD[:5] + [{**GOOD[5], "step": True}] + GOOD[6:]), "line 6 (step True)"),
    "no_step_key": (_lines([{k: v for k, v in r.items() if k != "step"} for r in GOOD]), "20 line(s) with no valid step"),
    "duplicated_steps": (_lines(GOOD[:10] + GOOD[5:10] + GOOD[10:]), "steps logged more than once ([6, 7, 8, 9, 10])"),
    "out_of_order": (_lines(list(reversed(GOOD))), "steps out of order in the file"),
    "truncated_last_line": (_lines(GOOD) + '{"step": 21, "rew', None),  # a run writing: silent
    "corrupt_middle_line": (_lines(GOOD[:10]) + "not json\n" + _lines(GOOD[10:]), "metrics.jsonl:11: skipping corrupt"),
    "empty_file": ("", None),
    "blank_lines": ("\n\n\n", None),
    "non_utf8_bytes": (_lines(GOOD[:5]).encode() + b"\xff\xfe\x80 bad\n" + _lines(GOOD[5:]).encode(),
                       "metrics.jsonl:6: skipping corrupt"),
    "json_array_of_objects": (json.dumps(GOOD) + "\n", "line 1 (list)"),
    "json_scalars": ('1\n"x"\nnull\n', "3 line(s) with no valid step"),
    "nesting_100000_deep": (_lines(GOOD[:5]) + "[" * 100000 + "\n" + _lines(GOOD[5:]), "metrics.jsonl:6: skipping corrupt"),
}
# name -> (summary.json fields over a completed run's, the note)
HOSTILE_SUMMARIES = {
    "wall_infinity": ('{"wall_seconds": Infinity}', "wall_seconds = inf is no finite number"),
    "wall_nan": ('{"wall_seconds": NaN}', "wall_seconds = nan is no finite number"),
    "wall_1e400": ('{"wall_seconds": 1e400}', "wall_seconds = inf is no finite number"),
    "wall_string": ('{"wall_seconds": "1h"}', "wall_seconds = '1h' is no finite number"),
    "wall_negative": ('{"wall_seconds": -5}', "wall_seconds = -5 is no finite number"),
    "steps_string": ('{"steps": "20"}', "steps = '20' is no count"),
    "steps_2pow70": ('{"steps": %d}' % 2**70, "steps = 1180591620717411303424 is no count"),
    "steps_negative": ('{"steps": -1}', "steps = -1 is no count"),
    "steps_infinity": ('{"steps": Infinity}', "steps = inf is no count"),
    "max_steps_string": ('{"max_steps": "ten"}', "max_steps = 'ten' is no count"),
    "tokens_infinity": ('{"tokens": Infinity}', "tokens = inf is no object"),
    "device_string": ('{"device": "gpu"}', "device = 'gpu' is no object"),
    "heldout_infinity": ('{"heldout_final": {"accuracy": Infinity, "format": 0.5, "n": 8}}',
                         "heldout_final.accuracy = inf is no finite number"),
    "summary_a_list": ("[1, 2]", "summary.json: expected a JSON object, got list"),
}
CONFIG = (f"model: {{name_or_path: {TINY_DIR}}}\n" "lora: {rank: 8}\noptim: {lr: 0.001}\n"
          "algorithm: {name: grpo, beta: 0.04, max_completion_length: 16}\ndataset: {name: toy}\n"
          "train: {max_steps: 20}\n")


def hostile_sweep(sweep: Path) -> dict[str, str | None]:
    """A sweep of one good run and one run per hostile file; {run directory name: expected note}."""
    expected = {"0_good": None}
    make_run(sweep / "0_good", summary=done(steps=20), metrics=GOOD, overrides=["lora.rank=4"])
    for num, (name, (text, note)) in enumerate(HOSTILE_METRICS.items(), start=1):
        run = make_run(sweep / f"{num}_m-{name}", summary=done(steps=20), overrides=["lora.rank=8"])
        path = run / rd.METRICS
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
        expected[run.name] = note
    for num, (name, (fields, note)) in enumerate(HOSTILE_SUMMARIES.items(), start=len(expected)):
        run = make_run(sweep / f"{num}_s-{name}", summary=done(steps=20), metrics=GOOD, overrides=["lora.rank=8"])
        summary = json.loads(fields)
        text = json.dumps({**done(steps=20), **summary}) if isinstance(summary, dict) else fields
        (run / rd.SUMMARY).write_text(text)  # json.dumps writes inf and nan as Infinity and NaN
        expected[run.name] = note
    for run in sweep.iterdir():
        (run / rd.CONFIG).write_text(CONFIG)
    return expected


@pytest.mark.parametrize("field, value, kind", [
    ("wall_seconds", math.nan, "finite number"), ("wall_seconds", -5, "finite number"),
    ("wall_seconds", "1h", "finite number"), ("wall_seconds", True, "finite number"),
    ("steps", math.nan, "count"), ("steps", -1, "count"), ("steps", "20", "count"), ("steps", True, "count"),
])
def test_analysis_and_the_cost_model_read_a_hostile_summary_number_the_same_way(field, value, kind, tmp_path):
    """summary.json's numbers have one reader (tina.run_dir.checked_summary): a report's row and the
    cost model's evidence drop the same value with the same note (each used to judge them its own way)."""
    from analysis.row import read_run

    run = make_run(tmp_path / "0_run", summary=done(steps=20), overrides=["lora.rank=8"])
    (run / rd.CONFIG).write_text(CONFIG)
    notes: list[str] = []
    assert [e.seconds_per_step for e in costmodel.evidence_from_runs([run], notes)] == [180.0] and notes == []
    (run / rd.SUMMARY).write_text(json.dumps({**done(steps=20), field: value}))  # NaN as JSON's NaN
    note = f"{rd.SUMMARY}: {field} = {value!r:.40} is no {kind}: ignored"
    row = read_run(str(run))
    assert note in row["notes"], row["notes"]
    assert (row["_summary"]["wall_seconds"] if field == "wall_seconds" else row["steps"]) in (None, 0)
    assert costmodel.evidence_from_runs([run], notes) == []
    assert len(notes) == 1 and note in notes[0], notes


def test_hostile_metrics_corpus_through_every_reader(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    expected = hostile_sweep(sweep)
    assert len(HOSTILE_METRICS) + len(HOSTILE_SUMMARIES) == 45 and len(expected) == 46

    # the parser itself: each metrics file reads, with its note (also warned), never an exception
    for name, (_, note) in HOSTILE_METRICS.items():
        run = next(sweep.glob(f"*_m-{name}"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = read_metrics(run)
        said = [str(w.message) for w in caught]
        assert df["step"].dtype == "int64" and df["step"].is_monotonic_increasing and df["step"].is_unique
        assert all(df[c].dtype.kind in "iuf" for c in df.columns), (name, df.dtypes)
        assert df.attrs["notes"] == said
        assert (note is None) == (not said), (name, said)
        assert note is None or any(note in n for n in said), (name, said)
        assert len(df) >= (0 if name in ("empty_file", "blank_lines", "no_step_key", "json_array_of_objects",
                                         "json_scalars") else 19), name

    # tina.phase (what `python -m analysis.phase` runs), one run at a time: a result for every run that has a metrics file
    for run in sorted(sweep.iterdir()):
        assert phase_main([str(run), "--json"]) == 0, run.name
        res = json.loads(capsys.readouterr().out)
        assert res["step"] is None or 0 <= res["step"] <= 20

    # tina.status: one row per run, each step count a count; the summary that is a list is unreadable
    assert status_main([str(sweep), "--json"]) == 1
    status = json.loads(capsys.readouterr().out)
    assert len(status) == len(expected)
    assert all(r["steps"] is None or 0 <= r["steps"] <= 21 for r in status)
    assert {Path(r["run_dir"]).name.split("-", 1)[1] for r in status if r["status"] != "completed"} == {"summary_a_list"}

    # tina.plan --from: the runs with a usable timing are evidence, the rest named with why
    assert plan_main(["--from", str(sweep), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    skipped = plan["skipped_evidence"]
    for name in HOSTILE_SUMMARIES:
        if name.startswith(("wall", "steps_2pow70", "steps_negative", "steps_string", "steps_infinity", "device")):
            assert any(f"s-{name}:" in n for n in skipped), (name, skipped)
    assert len(skipped) == 11  # 5 wall times, 4 step counts, the device, the list
    evidence = costmodel.evidence_from_runs([sweep])  # the other 35 runs: 3600 s / 20 steps each
    assert len(evidence) == 35 and {e.seconds_per_step for e in evidence} == {180.0}

    # analysis.report: the whole sweep, every run a row, every damaged run its note
    out = tmp_path / "report"
    assert report_main([str(sweep), "--out", str(out), "--no-cache", "--workers", "1"]) == 0
    capsys.readouterr()
    md = (out / "report.md").read_text().replace("\\|", "|")
    assert f"of {len(expected)} runs" in md
    for name, note in expected.items():
        assert note is None or note in md, (name, note)


# ----------------------------------------------------------------------------- data, not code
def test_python_tag_in_multirun_yaml_is_one_line_naming_the_file(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: !!python/object/apply:os.system ['touch PWNED']\n")
    assert sweep_main(["rerun", str(sweep)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(sweep / "multirun.yaml") in err[0] and "unreadable" in err[0]
    assert not (Path.cwd() / "PWNED").exists() and not (sweep / "PWNED").exists()
    # tina.status on it (with one run) does not trip over it either
    make_run(sweep / "0_lora.rank-8", summary=done(status="failed", error="X"), overrides=["lora.rank=8"])
    assert status_main([str(sweep)]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_report_md_escapes_html_from_run_values(tmp_path):
    sweep = tmp_path / "sweep"
    make_run(sweep / "0_a", summary=done(steps=20), metrics=GOOD, overrides=["lora.rank=4"])
    make_run(sweep / "1_b", summary=done(steps=3, status="failed", error="<script>alert(1)</script> & <b>"),
             metrics=rows(3), overrides=["lora.rank=8"])
    out = tmp_path / "out"
    assert report_main([str(sweep), "--out", str(out), "--no-cache", "--workers", "1"]) == 0
    md = (out / "report.md").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;" in md
    assert "<script" not in md and "<b>" not in md
    assert "<script" not in (out / "report.html").read_text().split("</style>", 1)[1]
