# Helpers for the deploy benchmarks (sourced after common.sh and director.sh): a director on
# the sim CPI whose nats-server traces message timings, the bosh-rs CLI pointed at it, and a
# cleanup that leaves no sim VM behind.
#
# Needs WORK (the scratch dir, unique per run), BOSH_DIRECTOR and BOSH_RS set by the caller.

# deploy_director_start DIR: director_start with a NATS trace in DIR/nats-trace and the CLI's
# environment exported. nats-server runs through a wrapper that adds `-V` (trace) and keeps
# only each PUB's time, connection and subject, plus the `method` and `reply_to` of agent
# requests: message payloads (apply specs, blobstore credentials) never reach the disk.
deploy_director_start() {
  local dir=$1
  mkdir -p "${dir}"
  {
    echo '#!/bin/bash'
    printf 'real=%q trace=%q\n' "${NATS_SERVER:-/usr/sbin/nats-server}" "${dir}/nats-trace"
    cat <<'EOF'
# the director's `--signal reload` calls pass straight through
for a in "$@"; do [ "$a" = --signal ] && exec "$real" "$@"; done
export TZ=UTC
exec "$real" "$@" -V 2> >(sed -u -n -E -e '/\[TRC\]/!{p;d}' \
  -e 's/^\[[0-9]+\] ([0-9/]+) ([0-9:.]+) \[TRC\] .* - cid:([0-9]+) - .*<<- \[PUB ([^ ]+) ([^ ]+ )?[0-9]+\]$/\1 \2 \3 PUB \4 \5/p' \
  -e 's/^\[[0-9]+\] ([0-9/]+) ([0-9:.]+) \[TRC\] .* - cid:([0-9]+) - .*<<- MSG_PAYLOAD: \[.{0,40}\\"method\\":\\"([a-z_]+)\\".*\\"reply_to\\":\\"([^\\]+)\\".*/\1 \2 \3 M \4 \5/p' >>"$trace")
EOF
  } >"${dir}/nats-wrapper"
  chmod +x "${dir}/nats-wrapper"
  NATS_SERVER="${dir}/nats-wrapper" director_start "${dir}/data" || return 1
  export BOSH_ENVIRONMENT=${DIRECTOR_URL} BOSH_CA_CERT=${DIRECTOR_CA} BOSH_CLIENT=admin
  export BOSH_CLIENT_SECRET=${DIRECTOR_PASSWORD}
}

# bosh LOG ARGS...: the CLI under test, output appended to LOG; shows its tail on failure.
bosh() {
  local log=$1
  shift
  "${BOSH_RS}" "$@" >>"${log}" 2>&1 || {
    echo "failed: bosh-rs $*" >&2
    tail -n 25 "${log}" >&2
    return 1
  }
}

# work_pids: processes (other than this shell) whose command line or environment names WORK:
# sim agents (`-b WORK/...`), their job processes (BOSH_AGENT_BASE_DIR), nats-server.
work_pids() {
  local p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "${pid}" = $$ ] && continue
    [ "${pid}" = "${BASHPID}" ] && continue
    if tr '\0' '\n' 2>/dev/null <"${p}/cmdline" | grep -qF "${WORK}" ||
      tr '\0' '\n' 2>/dev/null <"${p}/environ" | grep -qF "${WORK}"; then
      echo "${pid}"
    fi
  done
}

# rss_sum_kib PID...: total VmRSS of the processes still alive
rss_sum_kib() {
  local pid total=0 v
  for pid in "$@"; do
    v=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/${pid}/status" 2>/dev/null) || v=0
    total=$((total + ${v:-0}))
  done
  echo "${total}"
}

# deploy_teardown DEPLOYMENT: delete the deployment (its VMs are agent processes), stop the
# director, then kill by pid whatever is left under WORK.
deploy_teardown() {
  local name=$1 pids
  if [ -n "${DIRECTOR_PID:-}" ] && [ -n "${name}" ]; then
    timeout 600 "${BOSH_RS}" -n -d "${name}" delete-deployment --force \
      >>"${WORK}/cleanup.log" 2>&1 || true
  fi
  director_stop
  pids=$(work_pids)
  if [ -n "${pids}" ]; then
    # shellcheck disable=SC2086 # one pid per word
    kill -TERM ${pids} 2>/dev/null || true
    sleep 1
    pids=$(work_pids)
    # shellcheck disable=SC2086
    [ -z "${pids}" ] || kill -KILL ${pids} 2>/dev/null || true
  fi
}

# deploy_cleanup DEPLOYMENT: deploy_teardown, then remove WORK (BENCH_KEEP=1 keeps it).
deploy_cleanup() {
  deploy_teardown "$1"
  if [ -n "${BENCH_KEEP:-}" ]; then
    echo "kept ${WORK}" >&2
  else
    rm -rf "${WORK}"
  fi
}

# upload_sim_stemcell LOG: builds and uploads a sim stemcell
upload_sim_stemcell() {
  bosh "$1" create-stemcell sim --output "${WORK}/stemcell.tgz"
  bosh "$1" upload-stemcell "${WORK}/stemcell.tgz"
}

# task_of LOG: the id of the last task a CLI run logged ("Task N")
task_of() {
  sed -n -E 's/^Task ([0-9]+).*/\1/p' "$1" | tail -n 1
}

# task_secs DATA_DIR ID: the task's run time in the director's log ("task started" .. "task
# ended", microsecond timestamps), in seconds
task_secs() {
  sed 's/\x1b\[[0-9;]*m//g' "$1/director.err" | grep -E "task=$2( |\$)" |
    awk '/task started/ { s = $1 } /task ended/ { e = $1 } END { print s, e }' |
    python3 -c 'import sys
from datetime import datetime
s, e = sys.stdin.read().split()
f = lambda x: datetime.strptime(x.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
print(f"{f(e) - f(s):.3f}")'
}
