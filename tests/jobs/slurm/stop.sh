#!/usr/bin/env bash
# Stops the one-node Slurm that tests/jobs/slurm/start.sh started under DIR: cancels
# its jobs, then ends slurmd, slurmctld and munged by their pid files, and
# last any job step left over (a slurmstepd started for DIR, found by the
# ECCOLO_SLURM_DIR its daemons carry, and the processes under it).
#
#   usage: stop.sh DIR
set -uo pipefail
if (($# < 1)); then
    echo "usage: stop.sh DIR" >&2
    exit 2
fi
S=$1
PATH="$PATH:/usr/sbin:/sbin"
export SLURM_CONF="$S/slurm.conf"

alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }
pid_of() { [[ -r "$S/run/$1.pid" ]] && tr -dc '0-9' <"$S/run/$1.pid"; }

# processes by pid: TERM to all, up to 5 s, then KILL
end_pids() {
    local pid left
    for pid in "$@"; do
        alive "$pid" && kill -TERM "$pid" 2>/dev/null
    done
    for _ in $(seq 50); do
        left=0
        for pid in "$@"; do
            alive "$pid" && left=1
        done
        ((left)) || return 0
        sleep 0.1
    done
    for pid in "$@"; do
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
    done
    return 0
}

wd=$(pid_of watchdog)
if [[ -n "$wd" && "$wd" != "$$" ]]; then
    kill -TERM "$wd" 2>/dev/null
fi
rm -f "$S/run/watchdog.pid"

# the jobs, while the controller still runs
if alive "$(pid_of slurmctld)" && [[ -e "$S/slurm.conf" ]]; then
    scancel --quiet --user="$(id -un)" 2>/dev/null
    for _ in $(seq 50); do
        [[ -z "$(squeue -h -o %i 2>/dev/null)" ]] && break
        sleep 0.1
    done
fi

end_pids "$(pid_of slurmd)" "$(pid_of slurmctld)" "$(pid_of munged)"
rm -f "$S/run/slurmd.pid" "$S/run/slurmctld.pid" "$S/run/munged.pid"

# left-over job steps of this cluster and their processes
descendants() {
    local p=$1 c
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
        descendants "$c"
        echo "$c"
    done
}
for env in /proc/[0-9]*/environ; do
    pid=${env#/proc/}
    pid=${pid%/environ}
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == slurmstepd ]] || continue
    tr '\0' '\n' <"$env" 2>/dev/null | grep -qxF "ECCOLO_SLURM_DIR=$S" || continue
    for c in $(descendants "$pid"); do
        kill -KILL "$c" 2>/dev/null
    done
    kill -KILL "$pid" 2>/dev/null
done
exit 0
