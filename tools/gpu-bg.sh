#!/usr/bin/env bash
# Run a job longer than one device call (10 minutes) on the lab GPU box. The box kills what a call
# leaves running unless it started its own process session, and keeps /tmp while warm (30 s between
# calls), so: `start` launches the job under setsid and returns; back-to-back `wait` calls block until
# it ends (or MAX_S passes) and bring back its log and files. The job writes its files under $JOB_OUT.
#
# usage: tools/gpu-bg.sh start NAME COMMAND [ARGS...]
#        tools/gpu-bg.sh wait NAME MAX_S [DIR...]  (copies the log, and $JOB_OUT and the DIRs (e.g. a run
#                                                 directory still being written) as one archive, to $OUT)
set -uo pipefail
verb=${1:?usage: tools/gpu-bg.sh start|wait NAME ...}; name=${2:?job name}; shift 2
job=/tmp/jobs/$name
case $verb in
  start)
    [ -e "$job/pid" ] && { echo "job $name already started (pid $(cat "$job/pid"))" >&2; exit 2; }
    mkdir -p "$job/out"
    # setsid: the job outlives this call; its exit status lands in rc when it ends
    JOB_OUT=$job/out setsid bash -c '"$@" > "$0/log" 2>&1; echo $? > "$0/rc"' "$job" "$@" < /dev/null &
    echo $! > "$job/pid"
    echo "started $name (pid $!) at $(date -u +%T); log: $job/log"
    ;;
  wait)
    max_s=${1:?MAX_S}; shift
    [ -e "$job/pid" ] || { echo "no job $name on this box (a fresh machine?)" >&2; exit 2; }
    deadline=$((SECONDS + max_s))
    while [ ! -f "$job/rc" ] && [ $SECONDS -lt $deadline ]; do sleep 2; done
    state=running; [ -f "$job/rc" ] && state="ended rc=$(cat "$job/rc")"
    echo "job $name: $state at $(date -u +%T)"
    tail -n 40 "$job/log"
    if [ -n "${OUT:-}" ]; then
      cp "$job/log" "$OUT/$name.log"
      tar czf "$OUT/$name-out.tgz" "$job/out" "$@" 2>/dev/null
    fi
    [ -f "$job/rc" ] && exit "$(cat "$job/rc")"
    exit 75  # still running: call wait again
    ;;
  *) echo "unknown verb $verb (start|wait)" >&2; exit 2 ;;
esac
