#!/usr/bin/env bash
# A real one-node SLURM cluster on this (Debian) machine, without systemd: munged, mariadb,
# slurmdbd (accounting, so `sacct` works: submitit needs it), slurmctld and slurmd, started directly.
# Used to run tina's Hydra sweeps through hydra-submitit-launcher on one computer and in CI:
#
#   scripts/slurm-local.sh up        # install (apt, first time only), configure, start, wait until ready
#   python -m tina.train -m hydra/launcher=slurm_local lora.rank=4,8
#   scripts/slurm-local.sh status    # one line; exit 0 when the cluster takes jobs
#   scripts/slurm-local.sh down      # stop the daemons `up` started (state and accounting are kept)
#
# It leaves other people's SLURM alone: a cluster that already takes jobs (whoever configured it) is
# reused as it is; daemons it did not start are never stopped (what it starts is recorded under
# SLURM_LOCAL_STATE); a config file it did not write is never overwritten (`up` refuses instead).
# `up` is idempotent: when everything is already up it only checks (well under a second).
# It needs root (apt, daemons). Knobs (environment): SLURM_LOCAL_CPUS (CPUs the node declares, default
# 8: more than the cores, so several jobs run at once), SLURM_LOCAL_MEM_MB (16384), SLURM_LOCAL_WAIT_S
# (60: how long `up` waits for the daemons), SLURM_CONF (/etc/slurm/slurm.conf; slurmdbd.conf sits
# beside it), SLURM_LOCAL_STATE (/run/tina-slurm-local). Partition `debug` (default), cluster `tina`.
# Logs: /var/log/slurm/.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

CLUSTER=tina
PARTITION=debug
NODE=localhost
CPUS=${SLURM_LOCAL_CPUS:-8}
MEM_MB=${SLURM_LOCAL_MEM_MB:-16384}
WAIT_S=${SLURM_LOCAL_WAIT_S:-60}
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
ETC=$(dirname "$CONF")
DBD_CONF=$ETC/slurmdbd.conf
# What `up` started: one "pid start-time" file per daemon (the start time tells a reused pid apart).
STATE=${SLURM_LOCAL_STATE:-/run/tina-slurm-local}
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
HEADER="# Written by scripts/slurm-local.sh"
# True when $1 is absent or was written by this script, so `up` may (re)write it.
ours_file() { [ ! -e "$1" ] || head -n1 "$1" 2>/dev/null | grep -qF "$HEADER"; }
# Writes stdin to $1 with owner $2 and mode $3, atomically (mktemp's file is 0600 until then): the
# daemons check both (slurmdbd refuses a slurmdbd.conf not owned by its SlurmUser or readable by others).
write_file() {
  local tmp; tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"; chown "$2:" "$tmp"; chmod "$3" "$tmp"; mv -f "$tmp" "$1"
}
conf_value() { sed -n "s/^$2=//p" "$1" | tail -n1; }

# --------------------------------------------------------------------------- processes
# pid of daemon $1 (process name) from pid file $2, checked against /proc; else a scan of /proc
# (no pgrep: procps is not in minimal images).
pid_of() {
  local name=$1 pidfile=$2 pid="" comm f
  [ -r "$pidfile" ] && read -r pid 2>/dev/null <"$pidfile" || true
  if [ -n "$pid" ] && read -r comm 2>/dev/null <"/proc/$pid/comm" && [ "$comm" = "$name" ]; then
    echo "$pid"; return 0
  fi
  for f in /proc/[0-9]*/comm; do
    read -r comm 2>/dev/null <"$f" || continue
    if [ "$comm" = "$name" ]; then f=${f#/proc/}; echo "${f%/comm}"; return 0; fi
  done
  return 1
}
running() { pid_of "$1" "$2" >/dev/null; }
# Start time of pid $1 (clock ticks since boot, /proc/PID/stat field 22): a pid plus its start time
# names one process, even after the pid is reused.
start_time() {
  local stat; stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  set -- ${stat##*) }; echo "${20}"
}
# pid of daemon $1 from its pid file $2 alone (a daemon writes it once it has forked off).
pid_in_file() {
  local pid comm
  read -r pid 2>/dev/null <"$2" && read -r comm 2>/dev/null <"/proc/$pid/comm" && [ "$comm" = "$1" ] && echo "$pid"
}
# Records that `up` started daemon $1 (pid file $2).
record() {
  local pid; pid=$(pid_in_file "$1" "$2") || return 0
  install -d -m 0755 "$STATE"; echo "$pid $(start_time "$pid")" >"$STATE/$1.pid"
}
# pid of daemon $1 if `up` started it and it still runs.
our_pid() {
  local pid t comm
  read -r pid t 2>/dev/null <"$STATE/$1.pid" || return 1
  read -r comm 2>/dev/null <"/proc/$pid/comm" && [ "$comm" = "$1" ] && [ "$(start_time "$pid")" = "$t" ] \
    && echo "$pid"
}
ours() { our_pid "$1" >/dev/null; }
# pid of daemon $1 (pid file $2) when it runs but `up` did not start it.
foreign_pid() { ours "$1" && return 1; pid_of "$1" "$2"; }

MUNGE_PID=/run/munge/munged.pid
MARIADB_PID=/run/mysqld/mysqld.pid
DAEMONS=("munged:$MUNGE_PID" "mariadbd:$MARIADB_PID" "slurmdbd:$RUNDIR/slurmdbd.pid"
         "slurmctld:$RUNDIR/slurmctld.pid" "slurmd:$RUNDIR/slurmd.pid")
SLURM_DAEMONS=("slurmdbd:$RUNDIR/slurmdbd.pid" "slurmctld:$RUNDIR/slurmctld.pid" "slurmd:$RUNDIR/slurmd.pid")

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1; }
# Some node is idle/mix/alloc/comp without a flag (*: not responding, ~: powered off, drain, down...).
node_ready() { sinfo -h -o %t 2>/dev/null | grep -qxE 'idle|mix|alloc|comp'; }
sacct_ok() { timeout 10 sacct -n -X -S now-1minutes -o JobID >/dev/null 2>&1; }
# The cluster runs a job now: what "takes jobs" means, whoever configured it.
takes_jobs() {
  node_ready && sacct_ok && timeout 30 srun -n1 -t 1 --immediate=20 -J slurm-local-check true >/dev/null 2>&1
}

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
all_ours() { ours slurmdbd && ours slurmctld && ours slurmd; }

# "name (pid N)" of the daemons among "$@" (name:pidfile) that run but were not started by `up`.
foreign() {
  local d pid out=()
  for d in "$@"; do pid=$(foreign_pid "${d%%:*}" "${d#*:}") && out+=("${d%%:*} (pid $pid)"); done
  echo "${out[*]}"
}

# One line; exit 0 when some node takes jobs, accounting answers and no daemon `up` started has died.
status_line() {
  local d name parts=() ok=0 nodes
  for d in "${DAEMONS[@]}"; do
    name=${d%%:*}
    if ours "$name"; then parts+=("$name up")
    elif [ -e "$STATE/$name.pid" ]; then parts+=("$name DIED"); ok=1
    elif running "$name" "${d#*:}"; then parts+=("$name up (not started by slurm-local)")
    else parts+=("$name DOWN"); fi
  done
  node_ready || ok=1
  if sacct_ok; then parts+=("sacct ok"); else parts+=("sacct FAILS"); ok=1; fi
  nodes=$(sinfo -h -N -o '%N %t (%c CPUs, %m MB), partition %P' 2>/dev/null | paste -sd';' | sed 's/;/; /g' || true)
  echo "slurm-local: $([ $ok = 0 ] && echo UP || echo NOT READY): $(IFS=,; echo "${parts[*]}" | sed 's/,/, /g');" \
       "node ${nodes:-none}, cluster $(scontrol show config 2>/dev/null | sed -n 's/^ClusterName *= *//p')"
  return $ok
}

# Waits until "$@" succeeds or the deadline of `up` passes; $1 is what is awaited, $2 its log.
DEADLINE=0
wait_for() {
  local what=$1 log=$2; shift 2
  until "$@" >/dev/null; do
    if [ "$(date +%s)" -ge "$DEADLINE" ]; then
      echo "slurm-local: ERROR: $what not ready within ${WAIT_S}s (SLURM_LOCAL_WAIT_S). Last lines of $log:" >&2
      tail -n 20 "$log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
}

# Stops the daemons named in "$@" that `up` started, together: SIGTERM, then SIGKILL after 15 s.
# Any other process of the same name is not touched.
stop_ours() {
  local name pid pids=() names=() i j alive
  for name in "$@"; do
    if pid=$(our_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$name")
    fi
    rm -f "$STATE/$name.pid"
  done
  for i in $(seq 1 150); do
    alive=0
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
# munged and mariadbd are shared services: one already running (whoever started it) is used as it is.
start_munge() {
  if ! running munged "$MUNGE_PID"; then
    if [ ! -s /etc/munge/munge.key ]; then
      say "creating /etc/munge/munge.key"
      install -d -o munge -g munge -m 0700 /etc/munge
      mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
      chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGE_PID"
    runuser -u munge -- /usr/sbin/munged </dev/null 9>&-  # no daemon keeps `up`'s lock
    wait_for munged /var/log/munge/munged.log pid_in_file munged "$MUNGE_PID"
    record munged "$MUNGE_PID"
  fi
  wait_for munged /var/log/munge/munged.log sh -c 'munge -n </dev/null | unmunge >/dev/null 2>&1'
}

start_mariadb() {
  if ! running mariadbd "$MARIADB_PID"; then
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    install -d -o mysql -g adm -m 2750 /var/log/mysql
    if [ ! -d /var/lib/mysql/mysql ]; then
      say "initialising the MariaDB data directory"
      mariadb-install-db --user=mysql --datadir=/var/lib/mysql --auth-root-authentication-method=socket \
        >/var/log/mysql/install-db.log 2>&1 || die "mariadb-install-db failed, see /var/log/mysql/install-db.log"
    fi
    setsid -f /usr/sbin/mariadbd --user=mysql --pid-file="$MARIADB_PID" --socket=/run/mysqld/mysqld.sock \
      --bind-address=127.0.0.1 >>/var/log/mysql/mariadbd.log 2>&1 </dev/null 9>&-
    wait_for mariadb /var/log/mysql/mariadbd.log pid_in_file mariadbd "$MARIADB_PID"
    record mariadbd "$MARIADB_PID"
  fi
  wait_for mariadb /var/log/mysql/mariadbd.log sh -c "mariadb-admin --protocol=socket -s ping >/dev/null 2>&1"
  # The accounting database user (idempotent). Only reached when slurmdbd.conf is this script's, so
  # the password it sets is the one that file holds.
  mariadb --protocol=socket <<SQL
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
SQL
}

dbd_answers() { timeout 10 sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }
ctld_answers() { timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }

# Starts daemon $1 (pid file $2) with the command "${@:3}" unless it runs, and records it.
start_daemon() {
  running "$1" "$2" && return 0
  "${@:3}" </dev/null 9>&-
  wait_for "$1" "$LOGDIR/$1.log" pid_in_file "$1" "$2"
  record "$1" "$2"
}

start_slurm() {
  install -d -m 0755 "$RUNDIR" "$LOGDIR" "$STATEDIR"
  install -d -m 0700 "$STATEDIR/slurmctld" "$STATEDIR/slurmd"
  start_daemon slurmdbd "$RUNDIR/slurmdbd.pid" /usr/sbin/slurmdbd
  wait_for slurmdbd "$LOGDIR/slurmdbd.log" dbd_answers
  if ! sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
    say "registering cluster $CLUSTER in the accounting database"
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
  start_daemon slurmctld "$RUNDIR/slurmctld.pid" /usr/sbin/slurmctld
  wait_for slurmctld "$LOGDIR/slurmctld.log" ctld_answers
  start_daemon slurmd "$RUNDIR/slurmd.pid" /usr/sbin/slurmd -N "$NODE"
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
# Prints the status line and succeeds when there is nothing for `up` to do.
already_up() {
  local current=0 line others
  if same_file "$CONF" <<<"$want_slurm" && same_file "$DBD_CONF" <<<"$want_dbd"; then current=1; fi
  installed || return 1
  # Fast path: this script's configs, all daemons alive, a node takes jobs, sacct answers.
  if [ $current = 1 ] && all_running && line=$(status_line); then echo "$line"; return 0; fi
  # A working cluster is reused as it is, unless it is wholly this script's and its knobs changed.
  if { [ $current = 1 ] || ! all_ours; } && takes_jobs; then
    others=$(foreign "${SLURM_DAEMONS[@]}")
    say "reusing the SLURM cluster that already takes jobs here${others:+ (not started by slurm-local.sh: $others)};" \
        "its daemons and $ETC are left as they are"
    status_line; return 0
  fi
  return 1
}

cmd_up() {
  local want_slurm want_dbd others t_start
  t_start=$(date +%s)
  want_slurm=$(slurm_conf); want_dbd=$(slurmdbd_conf)
  already_up && return 0
  [ "$(id -u)" = 0 ] || die "the cluster is not (fully) up and starting it needs root"
  # Two `up`s at once (the tests start one in the background): the second waits, then finds it up.
  install -d -m 0755 "$(dirname "$STATE")"
  exec 9>"$STATE.lock"
  flock 9
  already_up && return 0

  installed || install_packages
  DEADLINE=$(( $(date +%s) + WAIT_S ))

  others=$(foreign "${SLURM_DAEMONS[@]}")
  [ -z "$others" ] || die "a SLURM cluster not started by slurm-local.sh is running here ($others) but" \
    "does not take jobs ($(node_ready && echo "node ready" || echo "no node ready"), sacct" \
    "$(sacct_ok && echo ok || echo fails)): left alone. Fix or stop it (its owner's job), then run up again."
  local f
  for f in "$CONF" "$DBD_CONF"; do
    ours_file "$f" || die "$f was not written by slurm-local.sh (its first line lacks '$HEADER'): left alone." \
      "Move it away for slurm-local.sh to write its own, or point SLURM_CONF at another path."
  done

  install -d -m 0755 "$ETC"
  if ! same_file "$CONF" <<<"$want_slurm"; then
    say "writing $CONF"
    stop_ours slurmd slurmctld
    write_file "$CONF" root 0644 <<<"$want_slurm"
  fi
  if ! same_file "$DBD_CONF" <<<"$want_dbd"; then
    say "writing $DBD_CONF"
    stop_ours slurmdbd
    # Owned by the SlurmUser it names, readable by no one else (it holds the DB password).
    write_file "$DBD_CONF" "$(slurmdbd_conf | sed -n 's/^SlurmUser=//p')" 0600 <<<"$want_dbd"
  fi

  start_munge
  start_mariadb
  start_slurm
  say "up in $(( $(date +%s) - t_start )) s"
  status_line
}

cmd_down() {
  local name mine=() others
  for name in slurmd slurmctld slurmdbd mariadbd munged; do ours "$name" && mine+=("$name"); done
  others=$(foreign "${DAEMONS[@]}")
  if [ ${#mine[@]} = 0 ]; then
    say "down (no daemon started by slurm-local.sh is running)"
  else
    [ "$(id -u)" = 0 ] || die "stopping the daemons needs root"
    # slurmctld hands its last job records to slurmdbd, which writes them to mariadb: stop in that order.
    stop_ours slurmd slurmctld
    stop_ours slurmdbd
    stop_ours mariadbd munged
    say "down (stopped ${mine[*]}; running job steps, if any, are left to finish)"
  fi
  [ -z "$others" ] || say "left running (not started by slurm-local.sh): $others"
}

case "${1:-up}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) status_line ;;
  -h|--help|help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (up | down | status)" ;;
esac
