#!/bin/bash
# Benchmark: director RSS idle with 1,500 deployments and 10,000 instances in its SQLite
# database, and GET /deployments, GET /deployments/NAME/instances p50/p99 at that size.
#
#   bench/director_scale.sh
#
# Environment:
#   BOSH_DIRECTOR  director binary (default: $CARGO_TARGET_DIR or target, /release/bosh-director)
#   DEPLOYMENTS    seeded deployments (default: 1500)
#   INSTANCES      seeded instances   (default: 10000; BIG of them in deployment-00001)
#   BIG            instances of the one large deployment (default: 1000)
#   REQUESTS       timed requests per endpoint and run (default: 200, after 10 warm-up ones)
#   RUNS           director starts measured (default: 3); RSS and percentiles are medians
#   BENCH_TMPDIR   where the data dir goes (default: $TMPDIR or /tmp)
#   BENCH_KEEP     set to 1 to keep the seeded data dir (its path is printed)
#   HM_ENABLED     0 starts the measured directors with `hm: {enabled: false}` (default 1), to
#                  see what the health monitor's once-a-second look at every VM costs
#
# A director is started once on a fresh data dir (migrations) and stopped; sqlite3 then inserts
# the rows straight into DATA_DIR/director.db: deployments with a ~1.5 KB manifest, and for
# every instance an instance row with a ~700 B apply spec, its active VM and its IP. The
# director (--cpi sim, its own nats-server child, no VM running) is then started RUNS times: its
# VmRSS is read after 5 s idle (before any request), each endpoint is timed REQUESTS times
# (bench/lib/timing.sh), and VmRSS/VmHWM are read again. Writes bench/out/director_scale.md
# and records the RSS and the two p99 goals (bench/out/director_scale.goals.tsv).
#
# goal: director RSS idle (1,500 deployments, 10,000 instances) ≤ 100 MB
# goal: GET /deployments p99 ≤ 50 ms
# goal: GET /deployments/x/instances (1,000) p99 ≤ 50 ms
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib/common.sh
source "${REPO}/bench/lib/common.sh"
# shellcheck source=bench/lib/director.sh
source "${REPO}/bench/lib/director.sh"
# shellcheck source=bench/lib/timing.sh
source "${REPO}/bench/lib/timing.sh"
# shellcheck source=bench/lib/seed.sh
source "${REPO}/bench/lib/seed.sh"

TARGET=${CARGO_TARGET_DIR:-${REPO}/target}
BOSH_DIRECTOR=${BOSH_DIRECTOR:-${TARGET}/release/bosh-director}
DEPLOYMENTS=${DEPLOYMENTS:-1500}
INSTANCES=${INSTANCES:-10000}
BIG=${BIG:-1000}
REQUESTS=${REQUESTS:-200}
RUNS=${RUNS:-3}
OUT="${REPO}/bench/out/director_scale.md"
GOAL_MS=50
GOAL_RSS_MIB=100

die() { echo "director_scale.sh: $*" >&2; exit 1; }
case "${DEPLOYMENTS}${INSTANCES}${BIG}${REQUESTS}${RUNS}" in *[!0-9]*) die "counts must be integers" ;; esac
[ "${DEPLOYMENTS}" -ge 2 ] || die "DEPLOYMENTS must be at least 2"
[ "${INSTANCES}" -gt "${BIG}" ] || die "INSTANCES must exceed BIG"
[ "${REQUESTS}" -ge 1 ] && [ "${RUNS}" -ge 1 ] || die "REQUESTS and RUNS must be at least 1"
[ -x "${BOSH_DIRECTOR}" ] || die "${BOSH_DIRECTOR} not found; build it first: cargo build --release -p bosh-director"
command -v sqlite3 >/dev/null || die "sqlite3 is needed (apt-get install sqlite3)"
command -v curl >/dev/null || die "curl is needed"
goal_reset director_scale

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/bench-director-scale.XXXXXX")
if [ "${BENCH_KEEP:-0}" = 1 ]; then
  trap 'director_stop; echo "kept ${WORK}/data" >&2' EXIT
else
  trap 'director_stop; rm -rf "${WORK}"' EXIT
fi
DATA="${WORK}/data"

seed_schema "${DATA}"

echo "seeding ${DEPLOYMENTS} deployments and ${INSTANCES} instances (${BIG} in deployment-00001)" >&2
now=$(date +%s)
others=$((DEPLOYMENTS - 1))
sqlite3 "${DATA}/director.db" <<SQL
BEGIN;
$(seed_deployments_sql "${DEPLOYMENTS}")

-- Instance i: the first BIG in deployment-00001 (groups web/worker/router), the rest spread
-- over the other deployments; k is the instance's position within its deployment.
CREATE TEMP TABLE seed AS
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${INSTANCES})
SELECT i,
  CASE WHEN i <= ${BIG} THEN 1 ELSE 2 + (i - ${BIG} - 1) % ${others} END AS d,
  CASE WHEN i <= ${BIG} THEN i - 1 ELSE (i - ${BIG} - 1) / ${others} END AS k
FROM n;
INSERT INTO instances (id, deployment, instance_group, uuid, instance_index, az, bootstrap,
  state, spec_json, created_at)
SELECT i, printf('deployment-%05d', d),
  CASE k % 3 WHEN 0 THEN 'web' WHEN 1 THEN 'worker' ELSE 'router' END,
  printf('%08x-1111-4000-8000-%012x', i, i), k / 3,
  CASE k % 2 WHEN 0 THEN 'z1' ELSE 'z2' END, k < 3, 'started',
  printf('{"deployment":"deployment-%05d","job":{"name":"%s","templates":[{"name":"web","version":"%040x","sha1":"%040x","blobstore_id":"%08x-2222-4000-8000-%012x"},{"name":"bpm","version":"%040x","sha1":"%040x","blobstore_id":"%08x-3333-4000-8000-%012x"}]},"index":%d,"id":"%08x-1111-4000-8000-%012x","az":"%s","networks":{"default":{"ip":"10.%d.%d.%d","netmask":"255.0.0.0","gateway":"10.0.0.1","default":["dns","gateway"],"dns":["10.0.0.2"],"cloud_properties":{}}},"vm_type":{"name":"small","cloud_properties":{"cpu":2,"ram":4096}},"stemcell":{"name":"bosh-sim-ubuntu-jammy","version":"1.%d"},"env":{},"packages":{},"properties":{},"configuration_hash":"%040x","persistent_disk":0}',
    d, CASE k % 3 WHEN 0 THEN 'web' WHEN 1 THEN 'worker' ELSE 'router' END, i, i, i, i, i + 7, i + 7, i, i,
    k / 3, i, i, CASE k % 2 WHEN 0 THEN 'z1' ELSE 'z2' END, i / 65536 + 1, (i / 256) % 256, i % 256, d % 90, i * 31),
  ${now} - 3600
FROM seed;
INSERT INTO vms (id, agent_id, cid, deployment, instance_id, stemcell_name, stemcell_version,
  stemcell_cid, cpi, network_spec, active, created_at)
SELECT i, printf('%08x-4444-4000-8000-%012x', i, i), printf('vm-%08x-5555-4000-8000-%012x', i, i),
  printf('deployment-%05d', d), i, 'bosh-sim-ubuntu-jammy', printf('1.%d', d % 90),
  'stemcell-cid', 'sim', '{}', 1, ${now} - 3600
FROM seed;
INSERT INTO ip_addresses (network_name, address, deployment, instance_id, vm_id, static,
  task_id, created_at)
SELECT 'default', printf('10.%d.%d.%d', i / 65536 + 1, (i / 256) % 256, i % 256),
  printf('deployment-%05d', d), i, i, 0, 1, ${now} - 3600
FROM seed;
COMMIT;
SQL
counts=$(sqlite3 "${DATA}/director.db" 'SELECT (SELECT COUNT(*) FROM deployments) || " deployments, " || (SELECT COUNT(*) FROM instances) || " instances, " || (SELECT COUNT(*) FROM vms) || " VMs"')
db_size=$(bytes_human "$(stat -c %s "${DATA}/director.db")")
echo "database: ${counts} (${db_size})" >&2

small="deployment-$(printf '%05d' $((DEPLOYMENTS / 2)))"
small_n=$(sqlite3 "${DATA}/director.db" "SELECT COUNT(*) FROM instances WHERE deployment = '${small}'")
PATHS=("/deployments" "/deployments/deployment-00001/instances" "/deployments/${small}/instances")
declare -A P50 P99 MAX BODY
idle_rss=() after_rss=() hwm=()
for run in $(seq 1 "${RUNS}"); do
  if [ "${HM_ENABLED:-1}" = 0 ]; then
    echo "hm: {enabled: false}" >"${WORK}/director.yml"
    director_start "${DATA}" --config "${WORK}/director.yml"
  else
    director_start "${DATA}"
  fi
  sleep 5
  idle_rss+=("$(proc_kib "${DIRECTOR_PID}" VmRSS)")
  for path in "${PATHS[@]}"; do
    mapfile -t lines < <(time_endpoint "${path}" "${REQUESTS}" "${WORK}")
    if [ "${#lines[@]}" -ne "${REQUESTS}" ]; then
      kill -0 "${DIRECTOR_PID}" 2>/dev/null || echo "the director (pid ${DIRECTOR_PID}) is gone" >&2
      sed 's/\x1b\[[0-9;]*m//g' "${DATA}/director.err" | tail -n 20 >&2
      die "${path}: expected ${REQUESTS} timings, got ${#lines[@]}"
    fi
    ms=()
    for l in "${lines[@]}"; do ms+=("${l%% *}"); done
    P50[${path}]+="$(percentile 50 "${ms[@]}") "
    P99[${path}]+="$(percentile 99 "${ms[@]}") "
    MAX[${path}]+="$(max_of "${ms[@]}") "
    BODY[${path}]=$(bytes_human "${lines[-1]##* }")
    echo "  run ${run} GET ${path}: p50 $(percentile 50 "${ms[@]}") ms, p99 $(percentile 99 "${ms[@]}") ms" >&2
  done
  after_rss+=("$(proc_kib "${DIRECTOR_PID}" VmRSS)")
  hwm+=("$(proc_kib "${DIRECTOR_PID}" VmHWM)")
  echo "  run ${run} RSS idle $((idle_rss[-1] / 1024)) MiB, after requests $((after_rss[-1] / 1024)) MiB, peak $((hwm[-1] / 1024)) MiB" >&2
  director_stop
done

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
rss_med=$(mib "$(median "${idle_rss[@]}")")
after_med=$(mib "$(median "${after_rss[@]}")")
hwm_med=$(mib "$(median "${hwm[@]}")")
verdict() { awk -v v="$1" -v g="$2" 'BEGIN { print (v <= g) ? "met" : "**missed**" }'; }
goal_record director_scale "director RSS idle (1,500 deployments, 10,000 instances) ≤ 100 MB" \
  "${rss_med} MiB (${counts})" "${rss_med}" le "${GOAL_RSS_MIB}"
ROWS=()
worst=0
for path in "${PATHS[@]}"; do
  # shellcheck disable=SC2086 # one number per word
  p50=$(median ${P50[${path}]})
  # shellcheck disable=SC2086
  p99=$(median ${P99[${path}]})
  # shellcheck disable=SC2086
  mx=$(max_of ${MAX[${path}]})
  worst=$(awk -v a="${worst}" -v b="${p99}" 'BEGIN { print (b > a) ? b : a }')
  case "${path}" in
    /deployments) what="${DEPLOYMENTS} deployments" ;;
    */deployment-00001/*) what="${BIG} instances" ;;
    *) what="${small_n} instances" ;;
  esac
  case "${path}" in
    /deployments) goal="GET /deployments p99 ≤ ${GOAL_MS} ms" ;;
    */deployment-00001/*) goal="GET /deployments/x/instances (1,000) p99 ≤ ${GOAL_MS} ms" ;;
    *) goal="" ;;
  esac
  if [ -n "${goal}" ]; then
    goal_record director_scale "${goal}" "$(printf '%.1f' "${p99}") ms p99 (${what}, p50 $(printf '%.1f' "${p50}") ms)" \
      "${p99}" le "${GOAL_MS}"
  fi
  ROWS+=("| \`GET ${path}\` (${what}) | ${RUNS} × ${REQUESTS} | $(printf '%.1f' "${p50}") ms | **$(printf '%.1f' "${p99}") ms** | ${mx} ms | ${BODY[${path}]} | ≤ ${GOAL_MS} ms: $(verdict "${p99}" "${GOAL_MS}") |")
done

mkdir -p "$(dirname "${OUT}")"
{
  echo "## director at scale: ${DEPLOYMENTS} deployments, ${INSTANCES} instances"
  echo
  echo "A release-build \`bosh-director\` (\`--cpi sim\`, SQLite, no VM running) whose database holds"
  echo "${counts} (${db_size}): deployment manifests of 3 releases, 1 stemcell and 3 instance groups;"
  echo "per instance a ~700 B apply spec, its active VM and its IP. \`deployment-00001\` holds ${BIG}"
  echo "instances, the others share the rest. The director is started ${RUNS} times; its RSS is read"
  echo "after 5 s idle, before any request (the nats-server child it starts is a separate process,"
  echo "not counted). Each endpoint is then requested ${REQUESTS} times after 10 warm-up requests, one"
  echo "at a time over one kept-alive TLS connection (curl's \`time_total\`, body included). Cells are"
  echo "medians over the runs (max: the largest over all)."
  echo
  echo "| measurement | runs | median | goal |"
  echo "|---|---|---|---|"
  echo "| director RSS idle | ${RUNS} | **${rss_med} MiB** | ≤ ${GOAL_RSS_MIB} MB (BOSH: 536 MB at 66 VMs): $(verdict "${rss_med}" "${GOAL_RSS_MIB}") |"
  echo "| director RSS after the requests below (peak VmHWM ${hwm_med} MiB) | ${RUNS} | ${after_med} MiB | |"
  echo
  echo "| request | requests | p50 | p99 | max | body | goal |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Machine: $(machine_summary); load average when done: $(cut -d' ' -f1-3 /proc/loadavg). Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/director_scale.sh\`."
} >"${OUT}"
cat "${OUT}"
