# Helpers for the deploy benchmarks (sourced after common.sh and director.sh): a director on
# the sim CPI whose nats-server traces message timings, the bosh-rs CLI pointed at it, and a
# cleanup that leaves no sim VM behind.
#
# Needs WORK (the scratch dir, unique per run), BOSH_DIRECTOR and BOSH_RS set by the caller.

# deploy_director_start DIR [DIRECTOR_ARGS...]: director_start with a NATS trace in DIR/nats-trace and the CLI's
# environment exported. nats-server runs through a wrapper that adds `-V` (trace) and keeps
# only each PUB's time, connection and subject, plus the `method` and `reply_to` of agent
# requests: message payloads (apply specs, blobstore credentials) never reach the disk. Its
# other log lines go where the director sends nats-server's log.
deploy_director_start() {
  local dir=$1
  shift
  mkdir -p "${dir}"
  {
    echo '#!/bin/bash'
    printf 'real=%q trace=%q\n' "${NATS_SERVER:-/usr/sbin/nats-server}" "${dir}/nats-trace"
    cat <<'EOF'
# the director's `--signal reload` calls pass straight through
for a in "$@"; do [ "$a" = --signal ] && exec "$real" "$@"; done
export TZ=UTC
# log lines other than traces stay on stderr (the director's nats.log, where it waits for
# "Reloaded server configuration"); traces are cut down into the trace file
exec "$real" "$@" -V 2> >(tee >(grep --line-buffered -v '\[TRC\]' >&2) | sed -u -n -E \
  -e 's/^\[[0-9]+\] ([0-9/]+) ([0-9:.]+) \[TRC\] .* - cid:([0-9]+) - .*<<- \[PUB ([^ ]+) ([^ ]+ )?[0-9]+\]$/\1 \2 \3 PUB \4 \5/p' \
  -e 's/^\[[0-9]+\] ([0-9/]+) ([0-9:.]+) \[TRC\] .* - cid:([0-9]+) - .*<<- MSG_PAYLOAD: \[.{0,40}\\"method\\":\\"([a-z_]+)\\".*\\"reply_to\\":\\"([^\\]+)\\".*/\1 \2 \3 M \4 \5/p' >>"$trace")
EOF
  } >"${dir}/nats-wrapper"
  chmod +x "${dir}/nats-wrapper"
  NATS_SERVER="${dir}/nats-wrapper" director_start "${dir}/data" "$@" || return 1
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

# deploy_teardown [DEPLOYMENT...]: delete the deployments (their VMs are agent processes), stop
# the director, then kill by pid whatever is left under WORK. Empty names are skipped.
deploy_teardown() {
  local name pids
  for name in "$@"; do
    if [ -n "${DIRECTOR_PID:-}" ] && [ -n "${name}" ]; then
      timeout 600 "${BOSH_RS}" -n -d "${name}" delete-deployment --force \
        >>"${WORK}/cleanup.log" 2>&1 || true
    fi
  done
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

# deploy_cleanup [DEPLOYMENT...]: deploy_teardown, then remove WORK (BENCH_KEEP=1 keeps it).
deploy_cleanup() {
  deploy_teardown "$@"
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

# deploy_require SCRIPT: fails unless the deploy benchmarks' binaries (bench_bins) and tools
# are there.
deploy_require() {
  local b c
  for b in "${BOSH_DIRECTOR}" "${BOSH_RS}" "${BOSH_AGENT_BIN}"; do
    [ -x "${b}" ] || { echo "$1: ${b} not found; build first: cargo build --release --workspace" >&2; exit 1; }
  done
  for c in curl jq python3 git; do
    command -v "${c}" >/dev/null || { echo "$1: ${c} is needed" >&2; exit 1; }
  done
  [ -x "${NATS_SERVER:-/usr/sbin/nats-server}" ] ||
    { echo "$1: nats-server is needed (Debian's, or set NATS_SERVER)" >&2; exit 1; }
}

# deploy_scratch NAME: WORK=a new scratch dir named after NAME; HOME (the CLI's ~/.bosh) and
# LOG (the CLI's output) inside it.
deploy_scratch() {
  WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/bench-$1.XXXXXX")
  export HOME="${WORK}/home"
  mkdir -p "${HOME}"
  LOG="${WORK}/cli.log"
}

# idler_job_write REL [PACKAGE...]: job `idler` in release dir REL, using PACKAGEs: its process
# is a `sleep` that a ctl script starts in the background (the agent, like monit, waits for
# the start program to exit) and whose pidfile it writes, so a VM costs little more than its
# agent.
idler_job_write() {
  local rel=$1
  shift
  mkdir -p "${rel}/jobs/idler/templates"
  {
    printf -- '---\nname: idler\ntemplates:\n  ctl: bin/ctl\n'
    printf 'packages: [%s]\n' "$(IFS=,; echo "$*" | sed 's/,/, /g')"
    printf 'properties: {}\n'
  } >"${rel}/jobs/idler/spec"
  cat >"${rel}/jobs/idler/monit" <<'EOF'
check process idler
  with pidfile /var/vcap/sys/run/idler/idler.pid
  start program "/var/vcap/jobs/idler/bin/ctl start"
  stop program "/var/vcap/jobs/idler/bin/ctl stop"
  group vcap
EOF
  cat >"${rel}/jobs/idler/templates/ctl" <<'EOF'
#!/bin/sh
RUN=/var/vcap/sys/run/idler
case "$1" in
  start)
    mkdir -p "$RUN"
    sleep 2147483647 </dev/null >/dev/null 2>&1 &
    echo $! >"$RUN/idler.pid" ;;
  stop) [ -s "$RUN/idler.pid" ] && kill "$(cat "$RUN/idler.pid")" 2>/dev/null; rm -f "$RUN/idler.pid" ;;
esac
EOF
}

# release_tarball LOG REL NAME TARBALL: commits release dir REL (create-release wants a clean
# git tree) and builds dev release NAME into TARBALL.
release_tarball() {
  (cd "$2" && git init -q . && git add -A && git -c user.name=bench -c user.email=bench@localhost commit -qm "$3")
  bosh "$1" create-release --force --name "$3" --tarball "$4" --dir "$2"
}

# idler_release LOG NAME TARBALL: a release NAME with only the idler job, built into TARBALL.
idler_release() {
  local rel="${WORK}/$2-release"
  bosh "$1" init-release --dir "${rel}"
  idler_job_write "${rel}"
  release_tarball "$1" "${rel}" "$2" "$3"
}

# deploy_env_start LOG TARBALL [DIRECTOR_ARGS...]: director (deploy_director_start in
# WORK/director, DATA = its data dir), a sim stemcell and the release TARBALL uploaded.
deploy_env_start() {
  local log=$1 tarball=$2
  shift 2
  deploy_director_start "${WORK}/director" "$@"
  DATA="${WORK}/director/data"
  upload_sim_stemcell "${log}"
  bosh "${log}" upload-release "${tarball}"
}

# sim_cloud_config_update LOG RANGE AZ...: a cloud config with AZs AZ..., one manual network
# `default` on RANGE (a CIDR whose .1 is the gateway and .2-.9 are reserved) in all of them,
# vm_type `small`, and 2 reused compilation workers in the first AZ.
sim_cloud_config_update() {
  local log=$1 range=$2 base az
  shift 2
  base=${range%/*}
  base=${base%.*}
  {
    echo "azs:"
    for az in "$@"; do echo "- name: ${az}"; done
    cat <<EOF
networks:
- name: default
  type: manual
  subnets:
  - range: ${range}
    gateway: ${base}.1
    dns: [127.0.0.53]
    azs: [$(IFS=,; echo "$*" | sed 's/,/, /g')]
    reserved: [${base}.2 - ${base}.9]
    cloud_properties: {}
vm_types:
- name: small
  cloud_properties: {}
compilation:
  workers: 2
  az: $1
  network: default
  vm_type: small
  reuse_compilation_vms: true
EOF
  } >"${WORK}/cloud.yml"
  bosh "${log}" -n update-cloud-config "${WORK}/cloud.yml"
}

# idler_manifest NAME RELEASE AZS MAX_IN_FLIGHT GROUP=INSTANCES...: a deployment manifest whose
# instance groups run the idler job of RELEASE in AZS ("z1,z2"), canaries 1, watch time
# 1000-30000 ms.
idler_manifest() {
  local name=$1 release=$2 azs=$3 mif=$4 g
  shift 4
  cat <<EOF
name: ${name}
releases: [{name: ${release}, version: latest}]
stemcells: [{alias: default, os: debian-bookworm, version: latest}]
update: {canaries: 1, max_in_flight: ${mif}, canary_watch_time: 1000-30000, update_watch_time: 1000-30000}
instance_groups:
EOF
  for g in "$@"; do
    cat <<EOF
- name: ${g%%=*}
  instances: ${g#*=}
  azs: [${azs//,/, }]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs: [{name: idler, release: ${release}}]
EOF
  done
}
