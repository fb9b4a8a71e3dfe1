#!/usr/bin/env bash
# A newcomer's first hour, timed: fresh clone -> fresh venv -> the README's install command ->
# `python -m tina.train` -> `python -m analysis.report <run dir>`. Prints the wall time of each stage.
#
#   benchmarks/bench_newcomer.sh [--worktree] [--keep] [-- TRAIN_OVERRIDES...]
#
# Default: `git clone` of this repository (its committed HEAD). --worktree copies the working tree
# instead (tracked + untracked, not ignored: what the next commit will hold). --keep leaves the temp dir.
# Overrides after `--` go to tina.train (e.g. `-- train.max_steps=20` for a quicker run).
# The install command is read from README.md (the first `pip install -e` line), so this tracks the README.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=clone KEEP=0 OVERRIDES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --worktree) MODE=worktree ;; --keep) KEEP=1 ;;
    --) shift; OVERRIDES=("$@"); break ;;
    *) echo "usage: $0 [--worktree] [--keep] [-- TRAIN_OVERRIDES...]" >&2; exit 2 ;;
  esac
  shift
done
# A newcomer's shell has no venv active: drop ours from PATH.
if [ -n "${VIRTUAL_ENV:-}" ]; then PATH=$(echo "$PATH" | tr : '\n' | grep -vx "$VIRTUAL_ENV/bin" | paste -sd:); fi
unset VIRTUAL_ENV PYTHONPATH
INSTALL=$(grep -m1 -E '^pip install -e ' "$ROOT/README.md" || true)
[ -n "$INSTALL" ] || { echo "bench_newcomer: no 'pip install -e' line in README.md" >&2; exit 1; }
TMP=$(mktemp -d /tmp/bench_newcomer.XXXXXX)
[ $KEEP = 1 ] || trap 'rm -rf "$TMP"' EXIT
LOG=$TMP/log
declare -a NAMES SECS
stage() {  # stage NAME CMD...: run CMD in the clone, log its output, record its wall time
  local name=$1 t0 t1; shift
  t0=$(date +%s.%N)
  if ! (cd "$TMP/tina" 2>/dev/null || cd "$TMP"; "$@") >>"$LOG" 2>&1; then
    echo "bench_newcomer: stage '$name' failed; last lines of $LOG:" >&2; tail -n 30 "$LOG" >&2; KEEP=1; trap - EXIT; exit 1
  fi
  t1=$(date +%s.%N)
  NAMES+=("$name"); SECS+=("$(echo "$t1 - $t0" | bc)")
  printf '  %-46s %7.1f s\n' "$name" "${SECS[-1]}"
}
echo "bench_newcomer: $MODE of $ROOT into $TMP; nproc $(nproc), load $(cut -d' ' -f1 /proc/loadavg); $(python3 --version)"
echo "  install command (README.md): $INSTALL"
echo "  pip: $(pip3 config list 2>/dev/null | grep -E 'find-links|extra-index' | tr '\n' ' ')cache $(du -sh "$(pip3 cache dir 2>/dev/null || echo ~/.cache/pip)" 2>/dev/null | cut -f1)"
T0=$(date +%s.%N)
if [ $MODE = clone ]; then
  stage "git clone" git clone -q "$ROOT" "$TMP/tina"
else
  stage "copy working tree" sh -c "mkdir -p '$TMP/tina' && cd '$ROOT' && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t '$TMP/tina' 2>/dev/null; cd '$TMP/tina' && git init -q && git add -A && git -c user.name=b -c user.email=b@b commit -qm wt"
fi
stage "python3 -m venv .venv" python3 -m venv .venv
stage "$INSTALL" bash -c ". .venv/bin/activate && $INSTALL"
echo "    pip: $(grep -c '^Processing /opt' "$LOG") packages from local wheels (/opt), $(grep -c 'Downloading' "$LOG") downloaded from the network, $(grep -c 'Using cached' "$LOG") from pip's cache"
stage "python -m tina.train ${OVERRIDES[*]:-}" bash -c ". .venv/bin/activate && python -m tina.train ${OVERRIDES[*]:-}"
RUN=$(ls -d "$TMP"/tina/outputs/*/* | tail -n1)
echo "    run: $(python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(s['status'], s['steps'], 'steps, train_runtime', s.get('train_runtime'), 's, held-out acc', (s.get('heldout_base') or {}).get('accuracy'), '->', (s.get('heldout_final') or {}).get('accuracy'))" "$RUN/summary.json")"
if [ -f "$TMP/tina/analysis/report.py" ]; then
  stage "python -m analysis.report RUN" bash -c ". .venv/bin/activate && python -m analysis.report '$RUN'"
else
  echo "  (report step skipped: analysis/report.py is not in this $MODE)"
fi
printf '  %-46s %7.1f s\n' "TOTAL" "$(echo "$(date +%s.%N) - $T0" | bc)"
if [ $KEEP = 1 ]; then echo "  kept: $TMP (log: $LOG)"; fi
