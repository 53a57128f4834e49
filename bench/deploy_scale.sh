#!/bin/bash
# Benchmark: fresh deploys at scale on the sim CPI with injected latency and simulated agents
# (each VM's agent is a task inside the director process with its own NATS connection and
# certificate; see crates/bosh-cpi/src/sim/simulated_agent.rs), against the floor that the
# VM-creation budget allows.
#
#   bench/deploy_scale.sh
#
# Rows (each on a fresh director; set ROWS to run some):
#   1k  N1 instances (default 1000), create_vm CREATE1_MS (1000), agent boot BOOT1_MS (500),
#       budget BUDGET1 (100 VMs created at once)
#   2k  N2 VMs (default 2000), create_vm CREATE2_MS (20000), boot BOOT2_MS (0), budget BUDGET2 (250)
#
# Environment:
#   BOSH_DIRECTOR, BOSH_RS  binaries under test (default: ${CARGO_TARGET_DIR:-target}/release/…)
#   ROWS                    "1k 2k" (default) or one of them
#   BENCH_TMPDIR            scratch dir location (default $TMPDIR or /tmp); BENCH_KEEP=1 keeps it
#
# The floor is the VM-creation phase alone with a perfect sliding window:
# N × (create_vm + boot) / budget (the director holds a slot from create_vm until the agent
# answers). Everything else (planning, rendering, NATS users, the per-instance agent sequence
# apply … post-start in 6 batches: canary + rest of each of 3 groups, max_in_flight 100%, watch
# time 100 ms) is counted against the director: overhead per instance = (wall − floor) / N.
# The director's CPU time during the deploy / N is given too; it includes the simulated agents,
# which run in the director's process. Writes bench/out/deploy_scale.md.
#
# goal: 1,000-instance deploy: director overhead ≤ 20 ms/instance
# goal: 2,000 VMs (create_vm 20 s, budget 250): wall ≤ 1.2 × floor
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib/common.sh
source "${REPO}/bench/lib/common.sh"
# shellcheck source=bench/lib/director.sh
source "${REPO}/bench/lib/director.sh"
# shellcheck source=bench/lib/deploy.sh
source "${REPO}/bench/lib/deploy.sh"

TARGET=${CARGO_TARGET_DIR:-${REPO}/target}
BOSH_DIRECTOR=${BOSH_DIRECTOR:-${TARGET}/release/bosh-director}
BOSH_RS=${BOSH_RS:-${TARGET}/release/bosh-rs}
ROWS=${ROWS:-1k 2k}
N1=${N1:-1000} CREATE1_MS=${CREATE1_MS:-1000} BOOT1_MS=${BOOT1_MS:-500} BUDGET1=${BUDGET1:-100}
N2=${N2:-2000} CREATE2_MS=${CREATE2_MS:-20000} BOOT2_MS=${BOOT2_MS:-0} BUDGET2=${BUDGET2:-250}
OUT="${REPO}/bench/out/deploy_scale.md"
GOAL_OVERHEAD_MS=20
GOAL_RATIO=1.2
DEPLOYMENT=bench-scale

die() { echo "deploy_scale.sh: $*" >&2; exit 1; }
for v in "${N1}" "${CREATE1_MS}" "${BOOT1_MS}" "${BUDGET1}" "${N2}" "${CREATE2_MS}" "${BOOT2_MS}" "${BUDGET2}"; do
  case "${v}" in '' | *[!0-9]*) die "N*, CREATE*_MS, BOOT*_MS, BUDGET* must be integers" ;; esac
done
for b in "${BOSH_DIRECTOR}" "${BOSH_RS}"; do
  [ -x "${b}" ] || die "${b} not found; build first: cargo build --release -p bosh-director -p bosh-cli"
done
for c in curl jq python3 git; do
  command -v "${c}" >/dev/null || die "${c} is needed"
done
[ -x "${NATS_SERVER:-/usr/sbin/nats-server}" ] || die "nats-server is needed (Debian's, or set NATS_SERVER)"
# Each simulated agent holds a NATS connection: one socket in the director, one in nats-server.
[ "$(ulimit -n)" -ge $((2 * N2 + 1024)) ] || ulimit -n $((2 * N2 + 1024)) 2>/dev/null ||
  die "open file limit $(ulimit -n) is too low for ${N2} agents"

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/bench-deploy-scale.XXXXXX")
DEPLOYED=
trap 'deploy_cleanup "${DEPLOYED}"' EXIT
trap 'exit 130' INT TERM
export HOME="${WORK}/home"
mkdir -p "${HOME}"
LOG="${WORK}/cli.log"

# ------------------------------------------------------------ release: one job, no packages
rel="${WORK}/idle-release"
bosh "${LOG}" init-release --dir "${rel}"
mkdir -p "${rel}/jobs/idler/templates"
cat >"${rel}/jobs/idler/spec" <<'EOF'
---
name: idler
templates:
  ctl.erb: bin/ctl
packages: []
properties:
  message: {default: hello}
EOF
cat >"${rel}/jobs/idler/monit" <<'EOF'
check process idler
  with pidfile /var/vcap/sys/run/idler/idler.pid
  start program "/var/vcap/jobs/idler/bin/ctl start"
  group vcap
EOF
cat >"${rel}/jobs/idler/templates/ctl.erb" <<'EOF'
#!/bin/sh
# <%= spec.name %>/<%= spec.index %> says <%= p('message') %>
exec sleep 2147483647
EOF
(cd "${rel}" && git init -q . && git add -A && git -c user.name=bench -c user.email=bench@localhost commit -qm idle)
bosh "${LOG}" create-release --force --name idle --tarball "${WORK}/idle.tgz" --dir "${rel}"
bosh "${LOG}" create-stemcell sim --output "${WORK}/stemcell.tgz"

cat >"${WORK}/cloud.yml" <<'EOF'
azs: [{name: z1}, {name: z2}]
networks:
- name: default
  type: manual
  subnets:
  - range: 127.16.0.0/20
    gateway: 127.16.0.1
    reserved: [127.16.0.2 - 127.16.0.9]
    azs: [z1, z2]
vm_types: [{name: small, cloud_properties: {}}]
compilation: {workers: 1, az: z1, network: default, vm_type: small}
EOF

# manifest N: 3 groups, canaries 1, max_in_flight 100%
manifest() {
  local n=$1 a b c
  a=$((n / 3)) b=$(((n - n / 3) / 2))
  c=$((n - a - b))
  cat <<EOF
name: ${DEPLOYMENT}
releases: [{name: idle, version: latest}]
stemcells: [{alias: default, os: debian-bookworm, version: latest}]
update: {canaries: 1, max_in_flight: 100%, canary_watch_time: 100-30000, update_watch_time: 100-30000}
instance_groups:
EOF
  for g in "web ${a}" "worker ${b}" "cache ${c}"; do
    set -- ${g}
    echo "- {name: $1, instances: $2, azs: [z1, z2], vm_type: small, stemcell: default, networks: [{name: default}], jobs: [{name: idler, release: idle, properties: {message: $1}}]}"
  done
}

# cpu_ticks PID: user + system clock ticks of a process
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# phase_sum NAME: seconds the director's deploy phase took (its /metrics histogram sum)
phase_sum() {
  dcurl "${DIRECTOR_URL}/metrics" 2>/dev/null |
    awk -v p="$1" '$1 == "bosh_director_deploy_phase_duration_seconds_sum{phase=\"" p "\"}" { printf "%.1f", $2 }'
}

ROWS_MD=()
NOTES=()
# Per row, for the goals table: "value|measured text".
GOAL_1K="|row not run" GOAL_2K="|row not run"
run_row() {
  local label=$1 n=$2 create_ms=$3 boot_ms=$4 budget=$5
  local dir="${WORK}/director-${label}"
  mkdir -p "${dir}"
  cat >"${dir}/director.yml" <<EOF
deploy: {vm_create_concurrency: ${budget}}
sim: {create_vm_delay_ms: ${create_ms}, agent_boot_delay_ms: ${boot_ms}, simulated_agents: true}
EOF
  director_start "${dir}/data" --config "${dir}/director.yml"
  export BOSH_ENVIRONMENT=${DIRECTOR_URL} BOSH_CA_CERT=${DIRECTOR_CA} BOSH_CLIENT=admin
  export BOSH_CLIENT_SECRET=${DIRECTOR_PASSWORD}
  bosh "${LOG}" upload-stemcell "${WORK}/stemcell.tgz"
  bosh "${LOG}" upload-release "${WORK}/idle.tgz"
  bosh "${LOG}" -n update-cloud-config "${WORK}/cloud.yml"
  manifest "${n}" >"${WORK}/manifest-${label}.yml"

  echo "${label}: fresh deploy of ${n} instances, create_vm ${create_ms} ms, boot ${boot_ms} ms, budget ${budget}" >&2
  local nats_pid ticks0 ticks1 t0 wall task running hwm nats_rss hz
  hz=$(getconf CLK_TCK)
  ticks0=$(cpu_ticks "${DIRECTOR_PID}")
  DEPLOYED=${DEPLOYMENT}
  t0=$(now_s)
  bosh "${WORK}/deploy-${label}.log" -n -d "${DEPLOYMENT}" deploy "${WORK}/manifest-${label}.yml"
  wall=$(awk -v a="${t0}" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }')
  ticks1=$(cpu_ticks "${DIRECTOR_PID}")
  task=$(task_of "${WORK}/deploy-${label}.log")
  running=$("${BOSH_RS}" -d "${DEPLOYMENT}" instances --json | jq '[.Tables[0].Rows[] | select(.process_state == "running")] | length')
  hwm=$(proc_kib "${DIRECTOR_PID}" VmHWM)
  nats_pid=$(cat "${dir}/data/nats/nats.pid" 2>/dev/null || pgrep -f "${dir}/data" -n nats-server || true)
  nats_rss=$( [ -n "${nats_pid}" ] && proc_kib "${nats_pid}" VmHWM || echo 0)
  local task_s create_s update_s floor ratio overhead cpu_ms
  task_s=$(task_secs "${dir}/data" "${task}")
  create_s=$(phase_sum create_vms)
  update_s=$(phase_sum update)
  floor=$(awk -v n="${n}" -v c="${create_ms}" -v b="${boot_ms}" -v k="${budget}" 'BEGIN { printf "%.1f", n * (c + b) / 1000 / k }')
  ratio=$(awk -v w="${wall}" -v f="${floor}" 'BEGIN { printf "%.2f", w / f }')
  overhead=$(awk -v w="${wall}" -v f="${floor}" -v n="${n}" 'BEGIN { printf "%.1f", (w - f) * 1000 / n }')
  cpu_ms=$(awk -v a="${ticks0}" -v b="${ticks1}" -v hz="${hz}" -v n="${n}" 'BEGIN { printf "%.1f", (b - a) * 1000 / hz / n }')
  echo "${label}: wall ${wall} s (task ${task_s} s; create_vms ${create_s} s, update ${update_s} s), floor ${floor} s, ${running}/${n} running, director CPU ${cpu_ms} ms/instance, peak RSS $((hwm / 1024)) MiB, nats-server $((nats_rss / 1024)) MiB" >&2
  [ "${running}" = "${n}" ] || die "${label}: only ${running} of ${n} instances are running"
  ROWS_MD+=("| ${n} instances, create_vm $(awk -v m="${create_ms}" 'BEGIN { print m / 1000 }') s, boot $(awk -v m="${boot_ms}" 'BEGIN { print m / 1000 }') s, budget ${budget} | **${wall} s** | ${floor} s | **${ratio}** | ${create_s:-?} s / ${update_s:-?} s | **${overhead} ms** | ${cpu_ms} ms | $((hwm / 1024)) MiB | $((nats_rss / 1024)) MiB |")
  # The rows' goals: 1k → overhead ≤ 20 ms/instance; 2k → wall ≤ 1.2 × floor.
  if [ "${label}" = 1k ]; then
    GOAL_1K="${overhead}|${overhead} ms/instance (wall ${wall} s, floor ${floor} s, ${n} instances)"
    NOTES+=("${n} instances: director overhead ${overhead} ms per instance against a goal of ≤ ${GOAL_OVERHEAD_MS} ms: $(awk -v v="${overhead}" -v g="${GOAL_OVERHEAD_MS}" 'BEGIN { print (v <= g) ? "met" : "missed" }').")
  else
    GOAL_2K="${ratio}|${ratio} × floor (wall ${wall} s, floor ${floor} s, ${n} VMs)"
    NOTES+=("${n} VMs: wall ${ratio} × floor against a goal of ≤ ${GOAL_RATIO} ×: $(awk -v v="${ratio}" -v g="${GOAL_RATIO}" 'BEGIN { print (v <= g) ? "met" : "missed" }').")
  fi

  local t1
  t1=$(now_s)
  timeout 1200 "${BOSH_RS}" -n -d "${DEPLOYMENT}" delete-deployment >>"${WORK}/delete-${label}.log" 2>&1 ||
    echo "${label}: delete-deployment failed (see ${WORK}/delete-${label}.log)" >&2
  echo "${label}: delete-deployment $(awk -v a="${t1}" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }') s" >&2
  DEPLOYED=
  director_stop
}

for row in ${ROWS}; do
  case "${row}" in
    1k) run_row 1k "${N1}" "${CREATE1_MS}" "${BOOT1_MS}" "${BUDGET1}" ;;
    2k) run_row 2k "${N2}" "${CREATE2_MS}" "${BOOT2_MS}" "${BUDGET2}" ;;
    *) die "unknown row '${row}' (1k, 2k)" ;;
  esac
done

goal_reset deploy_scale
goal_record deploy_scale "1,000-instance deploy: director overhead ≤ ${GOAL_OVERHEAD_MS} ms/instance" \
  "${GOAL_1K#*|}" "${GOAL_1K%%|*}" le "${GOAL_OVERHEAD_MS}"
goal_record deploy_scale "2,000 VMs (create_vm 20 s, budget 250): wall ≤ ${GOAL_RATIO} × floor" \
  "${GOAL_2K#*|}" "${GOAL_2K%%|*}" le "${GOAL_RATIO}"

mkdir -p "$(dirname "${OUT}")"
{
  echo "## deploy at scale: simulated agents, injected create_vm latency, a VM-creation budget"
  echo
  echo "Fresh deploys of a generated release (one job, no packages) in 3 instance groups over"
  echo "2 AZs, canaries 1, max_in_flight 100%, watch time 100-30000 ms; release-build"
  echo "\`bosh-director\` (SQLite, local blobstore, its own nats-server) with \`--cpi sim\`,"
  echo "\`sim.simulated_agents: true\` (each VM's agent is an in-process task with its own NATS"
  echo "connection, certificate and NATS user, answering in the real agent's shapes),"
  echo "\`sim.create_vm_delay_ms\` / \`agent_boot_delay_ms\` as in each row, and"
  echo "\`deploy.vm_create_concurrency\` = the budget. Timed by the CLI end to end."
  echo
  echo "Floor = N × (create_vm + boot) / budget, VM creation alone with a perfect sliding window."
  echo "Director overhead per instance = (wall − floor) / N: everything but VM creation is"
  echo "counted against the director, including the agent protocol's own waits (get_task polls"
  echo "100 ms after each long-running call, the 100 ms watch time, 6 update batches)."
  echo "Director CPU = the director process's user + system time during the deploy / N; it"
  echo "includes the simulated agents, which run in that process. Peak RSS (VmHWM) likewise."
  echo
  echo "| row | wall | floor | wall / floor | create_vms / update phases | director overhead per instance | director CPU per instance | director peak RSS | nats-server peak RSS |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS_MD[@]}"
  echo
  printf -- '- %s\n' "${NOTES[@]}"
  echo
  echo "Machine: $(machine_summary). Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/deploy_scale.sh\`."
} >"${OUT}"
cat "${OUT}"
