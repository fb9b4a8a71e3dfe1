#!/usr/bin/env bash
# Headless Chromium for the report's screenshot test (tests/test_report_browser.py), from Debian's
# own `chromium` package: the report must read right in a real browser at 1400 px, not only parse.
#
#   scripts/chromium.sh up       # install if missing (apt, needs root), then print the binary's path
#   scripts/chromium.sh status   # print the path and exit 0 when chromium is installed, else exit 1
#
# `up` is idempotent: when chromium is already installed it only prints its path.
set -euo pipefail

find_chromium() {
  for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}

case "${1:-up}" in
  status)
    find_chromium ;;
  up)
    if path=$(find_chromium); then echo "$path"; exit 0; fi
    [ "$(id -u)" = 0 ] || { echo "chromium.sh: chromium is not installed and installing it needs root" >&2; exit 1; }
    command -v apt-get >/dev/null || { echo "chromium.sh: chromium is not installed and apt-get is unavailable" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    # other jobs on the machine may hold apt's lock (a SLURM set-up, say): wait for it, do not fail
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
    find_chromium ;;
  *)
    echo "usage: scripts/chromium.sh up|status" >&2; exit 2 ;;
esac
