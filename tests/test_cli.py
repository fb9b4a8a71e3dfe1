"""What a user meets first: bad commands are one line naming the key, before anything is made;
the commands the README shows work; the console is quiet; paths can be pasted back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, summary, train

# (arguments, text the one-line error must contain). Misspelt keys in every group, wrong types,
# every numeric bound, unknown group options, Hydra syntax errors, missing files.
CORPUS = [
    (["lora.rnk=8"], "lora.rank"), (["optim.learning_rate=1e-3"], "optim.learning_rate: unknown key (did you mean optim.lr?)"), (["algorithm.betaa=0.1"], "algorithm.beta"),
    (["dataset.pth=/x"], "dataset.path"), (["reward.fncs.format.weight=1"], "reward.funcs"),
    (["compute.num_proc=2"], "compute.num_processes"), (["train.max_step=10"], "train.max_steps"),
    (["wandb.mod=offline"], "wandb.mode"), (["model.dtyp=float32"], "model.dtype"), (["eval.after_train=true"], "eval"),
    (["trian.max_steps=10"], "trian"), (["+foo=1"], "foo"), (["+lora.extra=1"], "lora.extra"),
    (["algorithm.scale_reward=none"], "algorithm.scale_rewards"),
    (["lora.rank=abc"], "lora.rank"), (["lora.rank=1.5"], "lora.rank"), (["optim.lr=fast"], "optim.lr"),
    (["compute.bf16=maybe"], "compute.bf16"), (["lora.target_modules=3"], "lora.target_modules"),
    (["train.seed=x"], "train.seed"), (["dataset.size=many"], "dataset.size"),
    (["reward.funcs.format.weight=heavy"], "reward.funcs.format.weight"),
    (["+reward.funcs.cosine.params.max_len=abc"], "reward.funcs.cosine.params.max_len"),
    (["+reward.funcs.cosine.params.max_len=0"], "max_len"),
    (["+reward.funcs.repetition.params.max_penalty=1"], "max_penalty"),
    (["+reward.funcs.repetition.params.ngram_size=0.5"], "ngram_size"),
    (["+reward.funcs.speed.weight=1"], "accuracy"), (["+reward.funcs.cosine.params.max_length=9"], "max_len"),
    (["lora.rank=0"], "lora.rank"), (["lora.rank=-4"], "lora.rank"), (["lora.alpha=0"], "lora.alpha"),
    (["lora.dropout=1"], "lora.dropout"), (["lora.dropout=-0.1"], "lora.dropout"),
    (["optim.lr=0"], "optim.lr"), (["optim.lr=-1e-6"], "optim.lr"), (["optim.weight_decay=-1"], "optim.weight_decay"),
    (["optim.warmup_ratio=1"], "optim.warmup_ratio"), (["optim.min_lr_rate=2"], "optim.min_lr_rate"),
    (["optim.max_grad_norm=0"], "optim.max_grad_norm"),
    (["algorithm.epsilon=-0.2"], "algorithm.epsilon"), (["algorithm.epsilon=0"], "algorithm.epsilon"),
    (["algorithm.num_iterations=0"], "algorithm.num_iterations"), (["algorithm.beta=-1"], "algorithm.beta"),
    (["algorithm.num_generations=1"], "algorithm.num_generations"), (["algorithm.temperature=0"], "algorithm.temperature"),
    (["algorithm.top_p=0"], "algorithm.top_p"), (["algorithm.top_k=-1"], "algorithm.top_k"),
    (["algorithm.max_completion_length=0"], "algorithm.max_completion_length"),
    (["algorithm.max_prompt_length=0"], "algorithm.max_prompt_length"),
    (["dataset.size=0"], "dataset.size"), (["dataset.eval_size=-1"], "dataset.eval_size"),
    (["dataset.seed=-1"], "dataset.seed"), (["compute.num_processes=0"], "compute.num_processes"),
    (["compute.num_threads=-1"], "compute.num_threads"), (["compute.num_threads=0"], "compute.num_threads"),
    (["compute.per_device_batch=0"], "compute.per_device_batch"), (["compute.per_device_batch=5"], "compute.per_device_batch"),
    (["compute.vllm_gpu_memory_utilization=1.5"], "compute.vllm_gpu_memory_utilization"),
    (["train.max_steps=0"], "train.max_steps"), (["train.max_steps=-5"], "train.max_steps"),
    (["train.stop_at_step=0"], "train.stop_at_step"), (["train.stop_at_step=500"], "train.stop_at_step"),
    (["train.save_steps=0"], "train.save_steps"), (["train.prompts_per_step=0"], "train.prompts_per_step"),
    (["train.logging_steps=0"], "train.logging_steps"), (["train.seed=-1"], "train.seed"),
    (["train.early_stop_patience=-1"], "train.early_stop_patience"),
    (["algorithm.scale_rewards=none"], "algorithm.name=custom"), (["algorithm.loss_type=ppo"], "dr_grpo"),
    (["dataset=gsm8k"], "dataset=gsm8k"), (["algorithm=ppo"], "algorithm=ppo"), (["lora=big"], "lora=big"),
    (["experiment=tina_nonexistent"], "experiment=tina_nonexistent"), (["model=llama"], "model=llama"),
    (["compute=tpu"], "compute=tpu"), (["reward=speed"], "reward=speed"), (["optim=sgd"], "optim=sgd"),
    (["model.dtype=fp8"], "bfloat16"), (["model.attn_implementation=flash"], "sdpa"), (["wandb.mode=cloud"], "offline"),
    (["train.early_stop=maybe"], "phase"),
    (["algorithm.epsilon_high=0.28"], "algorithm.epsilon_high"), (["algorithm=gspo", "algorithm.loss_type=dapo"], "algorithm.loss_type"),
    (["optim.lr_from_full=1e-5"], "optim.lr"), (["dataset.max_samples=0"], "dataset.max_samples"),
    (["dataset.max_samples=5000"], "dataset.max_samples"), (["dataset.sample_seed=-1"], "dataset.sample_seed"),
    (["lora.rank=[1"], "lora.rank=[1"), (["lora.rank=4,,8"], "lora.rank=4,,8"), (["train.output_dir=/tmp/a=b"], "train.output_dir"),
    (["lora.rank=4,8"], "lora.rank=4,8: several values are a sweep: add -m"), (["-m", "+sweeps=lora_rnak"], "sweeps=lora_rnak: no such option; sweeps has: algorithm,"),
    (["-m", "dataset=toy,gsm8k"], "dataset=gsm8k: no such option"), (["+sweeps=lora_rnak"], "lora_rank"),
    (["dataset.path=/no/such/file.jsonl"], "dataset.path"), (["model.name_or_path=/no/such/model"], "model.name_or_path"),
    (["dataset=limr", "dataset.path=/no/such/dir"], "dataset.path"),
]

DRIVER = """
import io, json, runpy, sys, time
from contextlib import redirect_stderr, redirect_stdout
out = []
for args, _ in json.loads(sys.argv[1]):
    sys.argv = ["tina.train", *args]
    start, code, printed, errors = time.time(), 0, io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(printed), redirect_stderr(errors):
            runpy.run_module("tina.train", run_name="__main__", alter_sys=True)  # as python -m tina.train
    except SystemExit as e:
        code = e.code
    out.append({"code": code, "seconds": time.time() - start, "printed": printed.getvalue() + errors.getvalue()})
print(json.dumps(out))
"""


def test_every_bad_command_is_refused_in_one_line_naming_the_key(tmp_path):
    """The corpus runs through the CLI (`cli()`: the precheck, Hydra's composition, tina.start_check)
    in one real process; a sample also runs as real commands below."""
    assert len(CORPUS) >= 60
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(CORPUS)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    failures = []
    for (args, expected), r in zip(CORPUS, results):
        message = str(r["code"])
        if not (message.startswith("tina: ") and expected in message and "\n" not in message.strip()
                and r["seconds"] < 30 and not r["printed"]):
            failures.append(f"{args}: {message!r} ({r['seconds']:.1f} s)")
    assert not failures, "\n".join(failures)
    assert list(tmp_path.iterdir()) == [], "a refused command makes no directory"


@pytest.mark.parametrize("args,expected", [CORPUS[0], CORPUS[40], CORPUS[-4], CORPUS[-1]])
def test_a_bad_command_exits_nonzero_with_one_line(args, expected, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tina.train", *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and expected in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_cfg_job_resolve_shows_final_values():
    proc = subprocess.run([sys.executable, "-m", "tina.train", "--cfg", "job", "--resolve", "lora.rank=8"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "alpha: 32" in proc.stdout and "output_dir: outputs/" in proc.stdout


def test_a_sweep_names_its_jobs_so_the_path_pastes_back(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "tina.train", "-m", f"hydra.sweep.dir={sweep}", "train.max_steps=2",
                           "train.save_steps=2", "algorithm.max_completion_length=8", "lora.rank=4,8"],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert [p.name for p in jobs] == [f"{i}_algorithm.max_completion_length-8__lora.rank-{r}__train.max_steps-2__"
                                      "train.save_steps-2" for i, r in ((0, 4), (1, 8))]
    # The multirun ends with a table of its jobs and the next commands.
    assert "2 of 2 jobs finished" in proc.stdout and f"python -m analysis.report {sweep}" in proc.stdout
    for job in jobs:
        assert str(job) in proc.stdout
    evaluated = subprocess.run([sys.executable, "-m", "tina.evaluate", f"run_dir={jobs[0]}", "eval.benchmarks=[toy]",
                                "eval.n_samples=1", "eval.seeds=[0]"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]


def test_the_console_is_quiet(tmp_path):
    """A step prints no metrics dict: the numbers that matter go to the progress line, the rest to
    metrics.jsonl and train.log."""
    run = tmp_path / "run"
    proc = train(run, "train.max_steps=10")
    console = proc.stdout + proc.stderr
    assert "'loss'" not in console and "{'" not in console
    assert "step 10/10" in console and "reward" in console
    assert len(console.encode()) < 12_000, len(console.encode())
    assert summary(run)["status"] == "completed"


def test_progress_shows_on_a_terminal(tmp_path):
    """Under a pseudo-terminal, as a user at a shell sees it: step lines between the held-out scores
    before and after training (they once appeared only when piped)."""
    import os
    import pty

    from tests.helpers import train_cmd

    primary, secondary = pty.openpty()
    proc = subprocess.Popen(train_cmd(tmp_path / "run", "train.max_steps=10"), cwd=ROOT, stdin=secondary,
                            stdout=secondary, stderr=secondary, close_fds=True)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: every holder of the terminal's other end has closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert proc.wait(timeout=600) == 0
    screen = b"".join(chunks).decode(errors="replace")
    during = screen.split("held-out before training")[1].split("held-out after training")[0]
    assert "step 1/10" in during and "step 10/10" in during and "reward" in during, screen[-3000:]


def test_the_command_line_is_read_as_hydra_reads_it(tmp_path):
    """The precheck reads the command line with Hydra's own parser, not a list of its flags: `--multi`
    is Hydra's --multirun (argparse takes a prefix), `--experimental-rerun` takes a file, and a quoted
    value keeps its `=` and `,` (the old hand-parser refused the first two as a sweep without -m and as
    no override)."""
    from tina.train import precheck

    assert precheck(["--multi", "lora.rank=4,8"]) is False  # a sweep: the launchers check each job
    assert precheck(["--experimental-rerun", str(tmp_path / "config.pickle")]) is False  # Hydra's own mode
    assert precheck(["--cfg=job", f"hydra.run.dir='{tmp_path}/a=b,c'", "lora.rank=4,8"]) is False  # prints, runs nothing
    assert precheck([f"hydra.run.dir='{tmp_path}/a=b,c'", "lora.rank=8"]) is True  # a run: tina.start_check
    assert list(tmp_path.iterdir()) == []
