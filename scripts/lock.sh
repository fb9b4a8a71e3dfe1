#!/usr/bin/env bash
# Refresh constraints.txt, the lock of every package `pip install -c constraints.txt -e '.[dev]'`
# installs (the README's set-up command, and so CI's). pyproject.toml keeps ranges for people who
# embed tina; this file pins the one set CI has passed with, so an upstream release cannot turn CI
# red. tests/test_lock.py fails when the two disagree.
#
#   scripts/lock.sh            # re-resolve within pyproject's ranges (newest releases), then run the tests
#
# transformers is held at the version the embedded model was built with (tina/embedded/tiny/config.json
# records it): its weight initialisation changes between releases, so a rebuild is byte-identical only
# at that version (tests/test_embedded.py). To move it, rebuild the model (python -m tina.embedded.build)
# at the new version, check the learning criteria (tests/test_learning.py), and change HOLD below.
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD="transformers==$(python3 -c 'import json;print(json.load(open("tina/embedded/tiny/config.json"))["transformers_version"])')"
command -v uv >/dev/null || python3 -m pip install -q uv
uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --no-header --quiet \
  --constraint <(echo "$HOLD") -o constraints.txt
{ echo "# Lock for: pip install -c constraints.txt -e '.[dev]'   Refresh: scripts/lock.sh (holds $HOLD)."
  echo "# torch==2.13.0 is the CPU build where a local wheel (or PyTorch's CPU index) provides it; on PyPI it is the CUDA build."
  cat constraints.txt; } > constraints.txt.new && mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) pins ($HOLD)"
