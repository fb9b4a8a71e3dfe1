#!/usr/bin/env bash
# lighteval's own environment, provisioned idempotently from a lock, working offline. lighteval 0.13
# cannot share tina's environment (antlr4 pins), so tina.evaluate runs it as a subprocess
# with this python (eval.lighteval_python). The tests call this script (tests/conftest.py), so a
# fresh machine runs the lighteval tests instead of skipping them.
#
#   scripts/lighteval-env.sh          # CPU env (accelerate backend): install if needed; last line = its python
#   scripts/lighteval-env.sh --gpu    # vLLM env (GPU machines: lighteval[vllm] pins vllm 0.10.1, torch 2.7)
#   scripts/lighteval-env.sh --lock   # re-resolve scripts/lighteval/{cpu,gpu}.txt from the .in files
#
# The venv lives at $TINA_LIGHTEVAL_VENV, default ~/.cache/tina/lighteval-<kind>-<hash of .in + lock>,
# so every checkout with the same lock shares one, and a changed lock makes a new one. When it is
# ready (stamp written after an offline import check) the script only prints the path (~0.1 s).
# Offline: lighteval builds the tinyBenchmarks metric when it lists its tasks, which downloads
# tinyBenchmarks.pkl unless the file exists; an empty one is enough (read only if a tiny benchmark
# runs). nltk's punkt downloads fail too, but lighteval only logs that.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "lighteval-env: $*" >&2; }
die() { echo "lighteval-env: ERROR: $*" >&2; exit 1; }

DIR=scripts/lighteval
BASE_PYTHON=${TINA_LIGHTEVAL_BASE_PYTHON:-python3.11}  # the locks are resolved for Python 3.11

if [ "${1:-}" = "--lock" ]; then
  command -v uv >/dev/null || python3 -m pip install -q uv
  for kind in cpu gpu; do
    uv pip compile "$DIR/$kind.in" --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
      --no-header --quiet -o "$DIR/$kind.txt"
    echo "$DIR/$kind.txt: $(grep -c '==' "$DIR/$kind.txt") pins"
  done
  exit 0
fi
case "${1:-}" in
  "") KIND=cpu ;;
  --gpu) KIND=gpu ;;
  *) die "unknown argument ${1}; allowed: (none) | --gpu | --lock" ;;
esac

LOCK=$DIR/$KIND.txt
SHA=$(cat "$DIR/$KIND.in" "$LOCK" | sha256sum | cut -c1-12)
VENV=${TINA_LIGHTEVAL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tina/lighteval-$KIND-$SHA}
PY=$VENV/bin/python
STAMP=$VENV/.tina-ready

ready() { [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SHA" ] && "$PY" -c "" 2>/dev/null; }
if ready; then echo "$PY"; exit 0; fi

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9  # two test sessions provisioning at once: the second waits, then finds it ready
if ready; then echo "$PY"; exit 0; fi

command -v "$BASE_PYTHON" >/dev/null || die "$BASE_PYTHON not found (TINA_LIGHTEVAL_BASE_PYTHON names another)"
started=$(date +%s)
say "creating $VENV ($KIND, lock $LOCK)"
rm -rf "$VENV"
"$BASE_PYTHON" -m venv "$VENV"
# The lock constrains every version; the .in says what to install. Where a local wheel folder
# (PIP_FIND_LINKS) holds torch's CPU build, pip takes it for torch==2.13.0 (else PyPI's CUDA build).
"$PY" -m pip install --quiet --disable-pip-version-check -c "$LOCK" -r "$DIR/$KIND.in" >&2 \
  || die "pip install into $VENV failed"

SITE=$("$PY" -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('lighteval').origin))")
touch "$SITE/tasks/tasks/tinyBenchmarks.pkl"

# The check: lighteval's whole task registry builds with no network.
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "$PY" - >&2 <<'EOF' || die "lighteval does not load offline in $VENV"
import importlib.metadata as m
from lighteval.tasks.registry import Registry
assert m.version("lighteval") == "0.13.0", m.version("lighteval")
Registry(tasks="gsm8k|0").load_tasks
print("lighteval", m.version("lighteval"), "torch", m.version("torch"), "loads offline")
EOF
echo "$SHA" > "$STAMP"
say "ready in $(( $(date +%s) - started )) s: $VENV ($(du -sh "$VENV" | cut -f1))"
echo "$PY"
