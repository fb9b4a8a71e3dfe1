"""scripts/slurm-local.sh leaves other people's SLURM alone and writes configs the daemons accept.

Each test runs the script for real, as root, in its own mount, network and pid namespaces: private
/run, /etc/slurm, /etc/munge and state/log directories, its own loopback. A complete cluster
(munged, mariadbd, slurmdbd, slurmctld, slurmd) starts there in seconds and dies with the namespace,
so the machine's own cluster, which other tests use, is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slurm

PRELUDE = r"""
set -euo pipefail
ip link set lo up
# slurmdbd binds through getaddrinfo(AI_ADDRCONFIG), which wants a non-loopback IPv4 address.
ip tuntap add tina0 mode tap && ip addr add 10.254.0.1/24 dev tina0 && ip link set tina0 up
for d in /run /etc/slurm /etc/munge /var/lib/slurm /var/log/slurm /var/lib/mysql /var/log/mysql \
         /var/lib/munge /var/log/munge; do
  mkdir -p "$d"; mount -t tmpfs tmpfs "$d"
done
script() { bash scripts/slurm-local.sh "$@"; }
# owner, mode, mtime and content hash of each file
fingerprint() { local f; for f in "$@"; do echo "$f $(stat -c '%U %a %Y' "$f") $(sha256sum <"$f" | cut -c1-16)"; done; }
# "name pid" of every SLURM/munge/mariadb daemon running
daemons() {
  local f c
  for f in /proc/[0-9]*/comm; do
    read -r c 2>/dev/null <"$f" || continue
    case $c in munged|mariadbd|slurmdbd|slurmctld|slurmd) f=${f#/proc/}; echo "$c ${f%/comm}";; esac
  done | sort
}
# A working cluster that someone else started and configured: started with another state directory,
# then its configs rewritten by hand (no slurm-local header) and its slurmdbd run as user slurm from a
# slurmdbd.conf owned by slurm (the set-up that an earlier version broke).
foreign_cluster() {
  SLURM_LOCAL_STATE=/run/someone-else script up >/dev/null
  local pid; pid=$(cat /run/slurm/slurmdbd.pid); kill "$pid"; while [ -e "/proc/$pid" ]; do sleep 0.1; done
  sed -i 1d /etc/slurm/slurm.conf
  install -d -o slurm -g slurm /run/slurmdbd
  sed -e 1d -e 's/^SlurmUser=.*/SlurmUser=slurm/' -e 's|^PidFile=.*|PidFile=/run/slurmdbd/slurmdbd.pid|' \
      -e 's|^LogFile=.*|LogFile=/run/slurmdbd/slurmdbd.log|' -i /etc/slurm/slurmdbd.conf
  chown slurm:slurm /etc/slurm/slurmdbd.conf; chmod 600 /etc/slurm/slurmdbd.conf
  /usr/sbin/slurmdbd
  until sacct -n -X >/dev/null 2>&1; do sleep 0.2; done
  srun -n1 true
}
"""


def isolated(body: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs `body` (bash, after PRELUDE) in fresh namespaces; everything it starts dies with it."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not Path("/usr/sbin/slurmctld").exists():
        reason = "needs root, unshare and SLURM installed (scripts/slurm-local.sh up installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return subprocess.run(
        ["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "bash", "-c", PRELUDE + body],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def marked(out: str, mark: str) -> list[str]:
    """Lines printed as `echo "MARK ..."` by the body, without the mark."""
    return [line[len(mark) + 1:] for line in out.splitlines() if line.startswith(mark + " ")]


@pytest.fixture(scope="module", autouse=True)
def installed(cluster):
    """SLURM must be installed: the session's cluster fixture does that (apt, first run only)."""


def test_up_writes_each_config_with_the_owner_and_mode_its_daemon_demands():
    # A slurmdbd.conf from an earlier `up` with other settings, but owned by slurm and readable by all.
    proc = isolated(r"""
        bash scripts/slurm-local.sh up >/dev/null   # cold start: writes both configs
        sed -i 's/^DebugLevel=.*/DebugLevel=verbose/' /etc/slurm/slurmdbd.conf
        chown slurm:slurm /etc/slurm/slurmdbd.conf; chmod 644 /etc/slurm/slurmdbd.conf
        script down >/dev/null
        script up
        echo "STAT $(stat -c '%U %a' /etc/slurm/slurmdbd.conf) $(sed -n 's/^SlurmUser=//p' /etc/slurm/slurmdbd.conf)"
        echo "STAT $(stat -c '%U %a' /etc/slurm/slurm.conf)"
        srun -n1 true && echo "JOB ran"
    """)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "writing /etc/slurm/slurmdbd.conf" in proc.stdout and "slurm-local: UP" in proc.stdout
    dbd, conf = marked(proc.stdout, "STAT")
    owner, mode, slurm_user = dbd.split()
    assert owner == slurm_user and mode == "600"  # what slurmdbd checks (it started: the job ran)
    assert conf == "root 644"
    assert marked(proc.stdout, "JOB") == ["ran"]


def test_up_reuses_a_cluster_someone_else_started_and_down_leaves_it_running():
    proc = isolated(r"""
        foreign_cluster
        echo "BEFORE $(fingerprint /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf | paste -sd' ') $(daemons | paste -sd' ')"
        script up; echo "UP rc=$?"
        script down; echo "DOWN rc=$?"
        echo "AFTER $(fingerprint /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf | paste -sd' ') $(daemons | paste -sd' ')"
        srun -n1 true && echo "JOB ran"
    """)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "reusing the SLURM cluster that already takes jobs here" in proc.stdout
    assert "slurmctld (pid" in proc.stdout and "left running (not started by slurm-local.sh)" in proc.stdout
    assert marked(proc.stdout, "UP") == ["rc=0"] and marked(proc.stdout, "DOWN") == ["rc=0"]
    (before,), (after,) = marked(proc.stdout, "BEFORE"), marked(proc.stdout, "AFTER")
    assert after == before, "configs, their owners and modes, and the daemons' pids are all unchanged"
    assert "slurmdbd.conf slurm 600" in before and "slurmd " in before
    assert marked(proc.stdout, "JOB") == ["ran"]


def test_up_refuses_clearly_and_touches_nothing_when_someone_elses_cluster_is_broken():
    proc = isolated(r"""
        foreign_cluster
        # Someone else's node goes away: their slurmctld and slurmdbd still run, no job can start.
        kill "$(cat /run/slurm/slurmd.pid)"; scontrol update NodeName=localhost State=DOWN Reason=gone
        while daemons | grep -q '^slurmd '; do sleep 0.1; done  # gone before BEFORE lists the daemons
        echo "BEFORE $(fingerprint /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf | paste -sd' ') $(daemons | paste -sd' ')"
        script up && echo "UP rc=0" || echo "UP rc=$?"
        echo "AFTER $(fingerprint /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf | paste -sd' ') $(daemons | paste -sd' ')"
        # Their cluster stopped altogether, their configs left behind: still not ours to rewrite.
        for n in slurmctld slurmdbd; do kill "$(daemons | sed -n "s/^$n //p")"; done
        while daemons | grep -q '^slurm'; do sleep 0.1; done
        script up && echo "UP2 rc=0" || echo "UP2 rc=$?"
        echo "AFTER2 $(fingerprint /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf | paste -sd' ') $(daemons | grep -c '^slurm' || true)"
    """)
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    assert marked(out, "UP") == ["rc=1"] and marked(out, "UP2") == ["rc=1"]
    refusal = [line for line in err.splitlines() if line.startswith("slurm-local: ERROR")]
    assert len(refusal) == 2, err
    assert "not started by slurm-local.sh is running here (slurmdbd (pid" in refusal[0]
    assert "slurmctld (pid" in refusal[0] and "left alone" in refusal[0]
    assert "/etc/slurm/slurm.conf was not written by slurm-local.sh" in refusal[1] and "left alone" in refusal[1]
    (before,), (after,), (after2,) = marked(out, "BEFORE"), marked(out, "AFTER"), marked(out, "AFTER2")
    assert after == before and "slurmd " not in after  # nothing stopped, rewritten or started
    files = " ".join(before.split()[:10])
    assert after2 == f"{files} 0"  # configs untouched, no SLURM daemon started
