#!/bin/bash
# Benchmark: GET /tasks and GET /deployments latency (p50/p99) on a release-build
# bosh-director whose SQLite database holds 10,000 tasks and 1,500 deployments.
#
#   bench/director_lists.sh
#
# Environment:
#   BOSH_DIRECTOR  director binary (default: $CARGO_TARGET_DIR or target, /release/bosh-director)
#   TASKS          seeded tasks       (default: 10000)
#   DEPLOYMENTS    seeded deployments (default: 1500)
#   REQUESTS       timed requests per endpoint (default: 200, after 10 warm-up requests)
#   BENCH_TMPDIR   where the data dir goes (default: $TMPDIR or /tmp)
#   BENCH_KEEP     set to 1 to keep the seeded data dir (for profiling; its path is printed)
#
# A director is started once on a fresh data dir (that runs the migrations) and stopped;
# then sqlite3 inserts the rows straight into DATA_DIR/director.db: deployments with a
# ~1.5 KB manifest (3 releases, 1 stemcell, 3 instance groups), tasks of the user-facing
# types in end states (done 90%, error 8%, cancelled 2%) spread over the deployments, with
# realistic descriptions and results. The director is started again and each endpoint is
# requested REQUESTS times, one at a time, over one kept-alive TLS connection
# (`curl -w %{time_total}` with many URLs in one process), so TLS handshakes are not timed.
# Writes bench/out/director_lists.md.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib/common.sh
source "${REPO}/bench/lib/common.sh"
# shellcheck source=bench/lib/director.sh
source "${REPO}/bench/lib/director.sh"

TARGET=${CARGO_TARGET_DIR:-${REPO}/target}
BOSH_DIRECTOR=${BOSH_DIRECTOR:-${TARGET}/release/bosh-director}
TASKS=${TASKS:-10000}
DEPLOYMENTS=${DEPLOYMENTS:-1500}
REQUESTS=${REQUESTS:-200}
OUT="${REPO}/bench/out/director_lists.md"
GOAL_MS=50

die() { echo "director_lists.sh: $*" >&2; exit 1; }
case "${TASKS}${DEPLOYMENTS}${REQUESTS}" in *[!0-9]*) die "TASKS, DEPLOYMENTS and REQUESTS must be integers" ;; esac
[ "${DEPLOYMENTS}" -ge 1 ] && [ "${REQUESTS}" -ge 1 ] || die "DEPLOYMENTS and REQUESTS must be at least 1"
[ -x "${BOSH_DIRECTOR}" ] || die "${BOSH_DIRECTOR} not found; build it first: cargo build --release -p bosh-director"
command -v sqlite3 >/dev/null || die "sqlite3 is needed (apt-get install sqlite3)"
command -v curl >/dev/null || die "curl is needed"

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/bench-director-lists.XXXXXX")
if [ "${BENCH_KEEP:-0}" = 1 ]; then
  trap 'director_stop; echo "kept ${WORK}/data" >&2' EXIT
else
  trap 'director_stop; rm -rf "${WORK}"' EXIT
fi
DATA="${WORK}/data"

echo "creating the schema" >&2
director_start "${DATA}"
director_stop

echo "seeding ${DEPLOYMENTS} deployments and ${TASKS} tasks" >&2
now=$(date +%s)
sqlite3 "${DATA}/director.db" <<SQL
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${DEPLOYMENTS})
INSERT INTO deployments (id, name, manifest, created_at)
SELECT printf('%08x-0000-4000-8000-%012x', i, i), printf('deployment-%05d', i),
  printf('name: deployment-%05d
releases:
- name: app
  version: "%d.%d.0"
- name: bpm
  version: 1.2.3
- name: routing
  version: "0.%d.0"
stemcells:
- alias: default
  os: ubuntu-jammy
  version: "1.%d"
update:
  canaries: 1
  max_in_flight: 2
  canary_watch_time: 1000-30000
  update_watch_time: 1000-30000
instance_groups:
- name: web
  instances: 3
  azs: [z1, z2]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs:
  - {name: web, release: app, properties: {port: 8080, workers: 4}}
  - {name: bpm, release: bpm}
- name: worker
  instances: 2
  azs: [z1]
  vm_type: medium
  stemcell: default
  networks: [{name: default}]
  jobs:
  - {name: worker, release: app, properties: {queue: jobs-%d}}
- name: router
  instances: 2
  azs: [z1, z2]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs:
  - {name: gorouter, release: routing, properties: {router: {port: 80, status: {port: 8082}}}}
', i, i % 7, i % 5, i % 40, i % 90, i),
  ${now} - (${DEPLOYMENTS} - i) * 60
FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${TASKS})
INSERT INTO tasks (type, state, description, payload, username, deployment, context_id,
  result, created_at, started_at, finished_at, checkpoint_at)
SELECT
  CASE i % 4 WHEN 0 THEN 'update_release' WHEN 3 THEN 'delete_deployment' ELSE 'update_deployment' END,
  CASE WHEN i % 50 = 0 THEN 'cancelled' WHEN i % 12 = 0 THEN 'error' ELSE 'done' END,
  CASE i % 4 WHEN 0 THEN 'create release' WHEN 3 THEN 'delete deployment deployment-' || printf('%05d', i % ${DEPLOYMENTS} + 1)
    ELSE 'create deployment' END,
  '{}', 'admin',
  CASE WHEN i % 4 = 0 THEN NULL ELSE printf('deployment-%05d', i % ${DEPLOYMENTS} + 1) END,
  '',
  CASE WHEN i % 12 = 0 THEN 'Action Failed get_task: Task 4a6f0e1b-aaaa-bbbb-cccc-000000000000 result: 1 of 2 pre-start scripts failed. Failed Jobs: web. Successful Jobs: bpm.'
    ELSE printf('/deployments/deployment-%05d', i % ${DEPLOYMENTS} + 1) END,
  ${now} - (${TASKS} - i) * 30, ${now} - (${TASKS} - i) * 30 + 1, ${now} - (${TASKS} - i) * 30 + 20,
  ${now} - (${TASKS} - i) * 30 + 20
FROM n;
COMMIT;
SQL
counts=$(sqlite3 "${DATA}/director.db" 'SELECT (SELECT COUNT(*) FROM tasks) || " tasks, " || (SELECT COUNT(*) FROM deployments) || " deployments"')
echo "database: ${counts}" >&2

director_start "${DATA}"

# time_endpoint PATH : prints REQUESTS request times in ms, one per line
time_endpoint() {
  local path=$1 cfg="${WORK}/curl.cfg" i
  : >"${cfg}"
  for i in $(seq 1 $((REQUESTS + 10))); do
    printf 'url = "%s%s"\noutput = "/dev/null"\n' "${DIRECTOR_URL}" "${path}" >>"${cfg}"
  done
  dcurl --fail -w '%{http_code} %{time_total} %{size_download}\n' --config "${cfg}" |
    tail -n +11 | awk -v p="${path}" '$1 != 200 { print "HTTP " $1 " for " p > "/dev/stderr"; exit 1 }
      { printf "%.3f %d\n", $2 * 1000, $3 }'
}

# percentile P VALUES... (nearest rank)
percentile() {
  local p=$1
  shift
  printf '%s\n' "$@" | sort -g | awk -v p="${p}" '{ v[NR] = $1 } END {
    r = int((p / 100) * NR + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR; printf "%.1f", v[r] }'
}

ROWS=()
worst=0
for path in "/tasks" "/tasks?verbose=1&limit=30" "/tasks?state=processing,cancelling,queued&verbose=1" \
  "/deployments"; do
  mapfile -t lines < <(time_endpoint "${path}")
  [ "${#lines[@]}" -eq "${REQUESTS}" ] || die "${path}: expected ${REQUESTS} timings, got ${#lines[@]}"
  ms=() bytes=0
  for l in "${lines[@]}"; do
    ms+=("${l%% *}")
    bytes=${l##* }
  done
  p50=$(percentile 50 "${ms[@]}")
  p99=$(percentile 99 "${ms[@]}")
  worst=$(awk -v a="${worst}" -v b="${p99}" 'BEGIN { print (b > a) ? b : a }')
  body=$(awk -v b="${bytes}" 'BEGIN { split("B KiB MiB", u, " "); i = 1
    while (b >= 1024 && i < 3) { b /= 1024; i++ } printf (i == 1 ? "%d %s" : "%.1f %s"), b, u[i] }')
  ROWS+=("| \`GET ${path}\` | ${REQUESTS} | ${p50} ms | **${p99} ms** | $(max_of "${ms[@]}") ms | ${body} |")
  echo "  GET ${path}: p50 ${p50} ms, p99 ${p99} ms (${body})" >&2
done
director_stop

verdict=$(awk -v w="${worst}" -v goal="${GOAL_MS}" 'BEGIN { print (w <= goal) ? "met" : "**missed**" }')
MACHINE=$(machine_summary)
mkdir -p "$(dirname "${OUT}")"
{
  echo "## director: task and deployment lists"
  echo
  echo "A release-build \`bosh-director\` on SQLite seeded with ${counts} (manifests of"
  echo "3 releases, 1 stemcell, 3 instance groups). Each endpoint is requested ${REQUESTS} times"
  echo "after 10 warm-up requests, one at a time over one kept-alive TLS connection (curl's"
  echo "\`time_total\`, so the response body is included). \`GET /tasks\` alone returns every"
  echo "user-facing task, as the Ruby director does without \`limit\`; the CLI's \`bosh tasks\` and"
  echo "\`bosh tasks --recent\` send the other two forms. Goal: p99 at most ${GOAL_MS} ms (${verdict})."
  echo
  echo "| request | requests | p50 | p99 | max | body |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Machine: ${MACHINE}. Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/director_lists.sh\`."
} >"${OUT}"
cat "${OUT}"
