#!/usr/bin/env bash
# Starts a one-node Slurm on loopback for the tests of `eccolo submit`: munged,
# slurmctld and slurmd, with every file (key, socket, state, spool, logs, pid
# files) under DIR, on the given ports, so that several can run side by side
# and nothing outside DIR is touched. Clients reach it with
# SLURM_CONF=DIR/slurm.conf.
#
#   usage: start.sh DIR CTLD_PORT SLURMD_PORT [OWNER_PID]
#
# The daemons run as the calling user (SlurmUser = SlurmdUser = id -un); tested
# as root, which slurmd normally needs.
#
# With OWNER_PID, a watchdog runs tests/jobs/slurm/stop.sh DIR as soon as that
# process is gone (a crashed or killed test leaves no daemons behind). When a
# step fails, what was started is stopped again (trap) and the exit code is
# not 0; exit 3 when Slurm or munge is not installed.
set -euo pipefail
if (($# < 3)); then
    echo "usage: start.sh DIR CTLD_PORT SLURMD_PORT [OWNER_PID]" >&2
    exit 2
fi
S=$1 CTLD_PORT=$2 SLURMD_PORT=$3 OWNER=${4:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PATH="$PATH:/usr/sbin:/sbin"

for t in mungekey munged slurmctld slurmd sbatch squeue scontrol scancel; do
    if ! command -v "$t" >/dev/null; then
        echo "start.sh: $t not found: install slurm-wlm and munge (apt-get install -y slurm-wlm munge)" >&2
        exit 3
    fi
done

started=0
cleanup() {
    local rc=$?
    if ((rc != 0 && started)); then
        echo "start.sh: failed (exit $rc); logs in $S/log" >&2
        tail -n 20 "$S"/log/*.log >&2 2>/dev/null || true
        "$HERE/stop.sh" "$S" >&2 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$S"/munge "$S"/mrun "$S"/state "$S"/spool "$S"/log "$S"/run
chmod 755 "$S" "$S/mrun"
chmod 700 "$S/munge"
export ECCOLO_SLURM_DIR="$S" # inherited by the daemons and slurmstepd: stop.sh finds them by it
export SLURM_CONF="$S/slurm.conf"

# ---- munge ----
[[ -e "$S/munge/munge.key" ]] || mungekey --create --keyfile="$S/munge/munge.key"
started=1
munged --key-file="$S/munge/munge.key" --socket="$S/mrun/munge.socket" --pid-file="$S/run/munged.pid" \
    --log-file="$S/log/munged.log" --seed-file="$S/munge/munge.seed"
for _ in $(seq 100); do
    [[ -S "$S/mrun/munge.socket" ]] && break
    sleep 0.05
done
[[ -S "$S/mrun/munge.socket" ]] || { echo "start.sh: munged did not start" >&2; exit 1; }

# ---- slurm.conf: no accounting, no cgroups, every path under $S ----
cpus=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
cat >"$S/slurm.conf" <<CONF
ClusterName=eccolotest
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$S/mrun/munge.socket
CredType=cred/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
KillWait=2
MinJobAge=4
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
NodeName=localhost NodeHostname=localhost CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

# ---- the daemons ----
slurmctld
slurmd -N localhost
ok=0
for _ in $(seq 200); do
    if scontrol show node localhost 2>/dev/null | grep -Eq 'State=(IDLE|MIXED|ALLOCATED)'; then
        ok=1
        break
    fi
    sleep 0.1
done
((ok)) || { echo "start.sh: the node did not become idle in 20 s" >&2; exit 1; }

# ---- the watchdog ----
if [[ -n "$OWNER" ]]; then
    # shellcheck disable=SC2016 # $1 $2 $3 are the inner shell's
    setsid bash -c 'while kill -0 "$1" 2>/dev/null && [[ -e "$2/slurm.conf" ]]; do sleep 1; done
                    [[ -e "$2/run/slurmctld.pid" || -e "$2/run/munged.pid" ]] && exec "$3/stop.sh" "$2"' \
        watchdog "$OWNER" "$S" "$HERE" </dev/null >/dev/null 2>&1 &
    echo $! >"$S/run/watchdog.pid"
fi
started=0 # success: keep it running
