#!/usr/bin/env bash
# A real one-node SLURM cluster on this (Debian) machine, without systemd: munged, mariadb,
# slurmdbd (accounting, so `sacct` works: submitit needs it), slurmctld and slurmd, started directly.
# Used to run tina's Hydra sweeps through hydra-submitit-launcher on one computer and in CI:
#
#   scripts/slurm-local.sh up        # install (apt, first time only), configure, start, wait until ready
#   python -m tina.train -m hydra/launcher=slurm_local lora.rank=4,8
#   scripts/slurm-local.sh status    # one line; exit 0 when the cluster takes jobs
#   scripts/slurm-local.sh down      # stop the daemons (state and accounting are kept)
#
# `up` is idempotent: when everything is already up it only checks (well under a second).
# It needs root (apt, daemons). Knobs (environment): SLURM_LOCAL_CPUS (CPUs the node declares, default
# 8: more than the cores, so several jobs run at once), SLURM_LOCAL_MEM_MB (16384), SLURM_LOCAL_WAIT_S
# (60: how long `up` waits for the daemons). Partition `debug` (default), cluster name `tina`.
# Logs: /var/log/slurm/. Configs: /etc/slurm/{slurm.conf,slurmdbd.conf} (rewritten by `up`).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

CLUSTER=tina
PARTITION=debug
NODE=localhost
CPUS=${SLURM_LOCAL_CPUS:-8}
MEM_MB=${SLURM_LOCAL_MEM_MB:-16384}
WAIT_S=${SLURM_LOCAL_WAIT_S:-60}
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
ETC=/etc/slurm
LOGDIR=/var/log/slurm
STATEDIR=/var/lib/slurm
RUNDIR=/run/slurm
DB_NAME=slurm_acct_db
DB_USER=slurm
# Loopback-only MariaDB (Debian binds 127.0.0.1) on a throwaway cluster: a fixed password is fine.
DB_PASS=tina-slurm-local

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: ERROR: $*" >&2; exit 1; }

# --------------------------------------------------------------------------- configs
slurm_conf() {
  cat <<EOF
# Written by scripts/slurm-local.sh (tina one-node cluster); rewritten by every \`up\`.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Short credential lifetime: a requeued job may start again after 5 s, not 121 s (read at slurmctld start).
AuthInfo=cred_expire=5
MpiDefault=none
MailProg=/bin/true
# No cgroups (containers, no systemd): track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Trust the node line below instead of the hardware: declare more CPUs than cores.
SlurmdParameters=config_overrides
# Jobs may be requeued (submitit requeues on preemption/timeout); a DOWN node comes back on registration.
JobRequeue=1
ReturnToService=2
# Reject at submission what can never run (too long, too many CPUs, GPUs) instead of pending forever.
EnforcePartLimits=ALL
SchedulerType=sched/backfill
# Backfill every 5 s (default 30): a requeued job, eligible again after cred_expire, restarts promptly.
SchedulerParameters=bf_interval=5
StateSaveLocation=$STATEDIR/slurmctld
SlurmdSpoolDir=$STATEDIR/slurmd
SlurmctldPidFile=$RUNDIR/slurmctld.pid
SlurmdPidFile=$RUNDIR/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=10
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES DefaultTime=01:00:00 MaxTime=2-00:00:00 State=UP
EOF
}

slurmdbd_conf() {
  cat <<EOF
# Written by scripts/slurm-local.sh (tina one-node cluster); rewritten by every \`up\`.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
DebugLevel=info
LogFile=$LOGDIR/slurmdbd.log
PidFile=$RUNDIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
}

# True when $1 holds exactly the text on stdin.
same_file() { [ -f "$1" ] && cmp -s - "$1"; }

# --------------------------------------------------------------------------- processes
# pid of daemon $1 (process name) from pid file $2, checked against /proc; else a scan of /proc
# (no pgrep: procps is not in minimal images).
pid_of() {
  local name=$1 pidfile=$2 pid="" comm f
  [ -r "$pidfile" ] && read -r pid <"$pidfile" 2>/dev/null || true
  if [ -n "$pid" ] && read -r comm <"/proc/$pid/comm" 2>/dev/null && [ "$comm" = "$name" ]; then
    echo "$pid"; return 0
  fi
  for f in /proc/[0-9]*/comm; do
    read -r comm <"$f" 2>/dev/null || continue
    if [ "$comm" = "$name" ]; then f=${f#/proc/}; echo "${f%/comm}"; return 0; fi
  done
  return 1
}
running() { pid_of "$1" "$2" >/dev/null; }

MUNGE_PID=/run/munge/munged.pid
MARIADB_PID=/run/mysqld/mysqld.pid
DAEMONS=("munged:$MUNGE_PID" "mariadbd:$MARIADB_PID" "slurmdbd:$RUNDIR/slurmdbd.pid"
         "slurmctld:$RUNDIR/slurmctld.pid" "slurmd:$RUNDIR/slurmd.pid")

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1; }
# idle/mix/alloc/comp without a flag (*: not responding, ~: powered off, drain, down...).
node_ready() { [[ "$(node_state)" =~ ^(idle|mix|alloc|comp)$ ]]; }
sacct_ok() { timeout 10 sacct -n -X -S now-1minutes -o JobID >/dev/null 2>&1; }

installed() {
  local b
  for b in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/bin/sacct /usr/sbin/slurmdbd \
           /usr/sbin/munged /usr/sbin/mariadbd; do
    [ -x "$b" ] || return 1
  done
}

all_running() {
  local d
  for d in "${DAEMONS[@]}"; do running "${d%%:*}" "${d#*:}" || return 1; done
}

all_down() {
  local d
  for d in "${DAEMONS[@]}"; do running "${d%%:*}" "${d#*:}" && return 1; done
  return 0
}

status_line() {
  local d parts=() ok=0 st
  for d in "${DAEMONS[@]}"; do
    if running "${d%%:*}" "${d#*:}"; then parts+=("${d%%:*} up"); else parts+=("${d%%:*} DOWN"); ok=1; fi
  done
  st=$(node_state || true)
  node_ready || ok=1
  if sacct_ok; then parts+=("sacct ok"); else parts+=("sacct FAILS"); ok=1; fi
  echo "slurm-local: $([ $ok = 0 ] && echo UP || echo NOT READY): $(IFS=,; echo "${parts[*]}" | sed 's/,/, /g');" \
       "node $NODE ${st:-unknown} ($CPUS CPUs, $MEM_MB MB), partition $PARTITION, cluster $CLUSTER"
  return $ok
}

# Waits until "$@" succeeds or the deadline of `up` passes; $1 is what is awaited, $2 its log.
DEADLINE=0
wait_for() {
  local what=$1 log=$2; shift 2
  until "$@"; do
    if [ "$(date +%s)" -ge "$DEADLINE" ]; then
      echo "slurm-local: ERROR: $what not ready within ${WAIT_S}s (SLURM_LOCAL_WAIT_S). Last lines of $log:" >&2
      tail -n 20 "$log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
}

# Stops the daemons named "name:pidfile" together: SIGTERM, then SIGKILL after 15 s.
stop_daemons() {
  local d pids=() names=() i j
  for d in "$@"; do
    local pid; pid=$(pid_of "${d%%:*}" "${d#*:}") || continue
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid"); names+=("${d%%:*}"); rm -f "${d#*:}"
  done
  for i in $(seq 1 150); do
    local alive=0
    for j in "${pids[@]}"; do kill -0 "$j" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.1
  done
  for j in "${!pids[@]}"; do
    if kill -0 "${pids[$j]}" 2>/dev/null; then
      say "${names[$j]} (pid ${pids[$j]}) ignored SIGTERM for 15 s: SIGKILL"
      kill -KILL "${pids[$j]}" 2>/dev/null || true
    fi
  done
}

# --------------------------------------------------------------------------- install
install_packages() {
  command -v apt-get >/dev/null || die "SLURM is not installed and apt-get is missing (Debian/Ubuntu only)"
  say "installing ${PACKAGES[*]} (apt, no daemon auto-start)"
  export DEBIAN_FRONTEND=noninteractive
  # A policy-rc.d answering 101 stops the packages' init scripts from starting daemons during apt;
  # an existing one (Docker images ship one) is put back afterwards.
  local policy=/usr/sbin/policy-rc.d backup=""
  if [ -e "$policy" ]; then backup=$(mktemp); cp -p "$policy" "$backup"; fi
  trap "if [ -n '$backup' ]; then mv -f '$backup' '$policy'; else rm -f '$policy'; fi" EXIT
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"
  local apt=(apt-get -q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef
             -o Dpkg::Options::=--force-confold)
  # Package lists missing (fresh image) or stale (404 on install): update, then (re)try.
  if ! apt-cache show slurmctld >/dev/null 2>&1; then "${apt[@]}" update </dev/null; fi
  if ! "${apt[@]}" install --no-install-recommends "${PACKAGES[@]}" </dev/null; then
    "${apt[@]}" update </dev/null
    "${apt[@]}" install --no-install-recommends "${PACKAGES[@]}" </dev/null
  fi
  if [ -n "$backup" ]; then mv -f "$backup" "$policy"; else rm -f "$policy"; fi
  trap - EXIT
  installed || die "apt finished but SLURM/munge/mariadb binaries are still missing"
}

# --------------------------------------------------------------------------- start
start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    install -d -o munge -g munge -m 0700 /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  running munged "$MUNGE_PID" && return 0
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGE_PID"
  runuser -u munge -- /usr/sbin/munged </dev/null
  wait_for munged /var/log/munge/munged.log sh -c 'munge -n </dev/null | unmunge >/dev/null 2>&1'
}

start_mariadb() {
  install -d -o mysql -g mysql -m 0755 /run/mysqld
  install -d -o mysql -g adm -m 2750 /var/log/mysql
  if [ ! -d /var/lib/mysql/mysql ]; then
    say "initialising the MariaDB data directory"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --auth-root-authentication-method=socket \
      >/var/log/mysql/install-db.log 2>&1 || die "mariadb-install-db failed, see /var/log/mysql/install-db.log"
  fi
  if ! running mariadbd "$MARIADB_PID"; then
    setsid -f /usr/sbin/mariadbd --user=mysql --pid-file="$MARIADB_PID" --socket=/run/mysqld/mysqld.sock \
      --bind-address=127.0.0.1 >>/var/log/mysql/mariadbd.log 2>&1 </dev/null
  fi
  wait_for mariadb /var/log/mysql/mariadbd.log sh -c "mariadb-admin --protocol=socket -s ping >/dev/null 2>&1"
  # The accounting database user (idempotent).
  mariadb --protocol=socket <<SQL
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
SQL
}

dbd_answers() { timeout 10 sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }
ctld_answers() { timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }

start_slurm() {
  install -d -m 0755 "$RUNDIR" "$LOGDIR" "$STATEDIR"
  install -d -m 0700 "$STATEDIR/slurmctld" "$STATEDIR/slurmd"
  if ! running slurmdbd "$RUNDIR/slurmdbd.pid"; then /usr/sbin/slurmdbd </dev/null; fi
  wait_for slurmdbd "$LOGDIR/slurmdbd.log" dbd_answers
  if ! sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
    say "registering cluster $CLUSTER in the accounting database"
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
  if ! running slurmctld "$RUNDIR/slurmctld.pid"; then /usr/sbin/slurmctld </dev/null; fi
  wait_for slurmctld "$LOGDIR/slurmctld.log" ctld_answers
  if ! running slurmd "$RUNDIR/slurmd.pid"; then /usr/sbin/slurmd -N "$NODE" </dev/null; fi
  # A node left DRAIN/DOWN by an earlier run (ReturnToService=2 covers plain DOWN) is resumed once.
  local resumed=0 t0 st
  t0=$(date +%s)
  until node_ready; do
    st=$(node_state || true)
    if [ $resumed = 0 ] && [ $(( $(date +%s) - t0 )) -ge 5 ] && [[ "$st" =~ ^(drain|drng|down|fail) ]]; then
      say "node $NODE is $st: resuming it"
      scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
      resumed=1
    fi
    if [ "$(date +%s)" -ge "$DEADLINE" ]; then
      echo "slurm-local: ERROR: node $NODE not ready within ${WAIT_S}s (sinfo state: ${st:-none})." \
           "Last lines of $LOGDIR/slurmd.log:" >&2
      tail -n 20 "$LOGDIR/slurmd.log" >&2 2>/dev/null || true
      sinfo -R >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
  wait_for sacct "$LOGDIR/slurmdbd.log" sacct_ok
}

# --------------------------------------------------------------------------- commands
cmd_up() {
  local want_slurm want_dbd
  want_slurm=$(slurm_conf); want_dbd=$(slurmdbd_conf)
  # Fast path: installed, configs current, daemons alive, node takes jobs, sacct answers.
  if installed && same_file "$ETC/slurm.conf" <<<"$want_slurm" && same_file "$ETC/slurmdbd.conf" <<<"$want_dbd" \
     && all_running && node_ready && sacct_ok; then
    status_line; return 0
  fi
  [ "$(id -u)" = 0 ] || die "the cluster is not (fully) up and starting it needs root"
  local t_start; t_start=$(date +%s)
  installed || install_packages
  DEADLINE=$(( $(date +%s) + WAIT_S ))

  install -d -m 0755 "$ETC"
  if ! same_file "$ETC/slurm.conf" <<<"$want_slurm"; then
    say "writing $ETC/slurm.conf"
    stop_daemons "slurmd:$RUNDIR/slurmd.pid" "slurmctld:$RUNDIR/slurmctld.pid"
    printf '%s\n' "$want_slurm" >"$ETC/slurm.conf"; chmod 0644 "$ETC/slurm.conf"
  fi
  if ! same_file "$ETC/slurmdbd.conf" <<<"$want_dbd"; then
    say "writing $ETC/slurmdbd.conf"
    stop_daemons "slurmdbd:$RUNDIR/slurmdbd.pid"
    # slurmdbd refuses a config readable by others (it holds the DB password).
    (umask 077; printf '%s\n' "$want_dbd" >"$ETC/slurmdbd.conf"); chmod 0600 "$ETC/slurmdbd.conf"
  fi

  start_munge
  start_mariadb
  start_slurm
  say "up in $(( $(date +%s) - t_start )) s"
  status_line
}

cmd_down() {
  if all_down; then say "down (nothing was running)"; return 0; fi
  [ "$(id -u)" = 0 ] || die "stopping the daemons needs root"
  # slurmctld hands its last job records to slurmdbd, which writes them to mariadb: stop in that order.
  stop_daemons "slurmd:$RUNDIR/slurmd.pid" "slurmctld:$RUNDIR/slurmctld.pid"
  stop_daemons "slurmdbd:$RUNDIR/slurmdbd.pid"
  stop_daemons "mariadbd:$MARIADB_PID" "munged:$MUNGE_PID"
  say "down (slurmd, slurmctld, slurmdbd, mariadbd, munged stopped; running job steps, if any, are left to finish)"
}

case "${1:-up}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) status_line ;;
  -h|--help|help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (up | down | status)" ;;
esac
