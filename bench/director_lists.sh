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
#   REQUESTS       timed requests per endpoint and run (default: 200, after 10 warm-up requests)
#   RUNS           director starts measured (default: 3); the table gives medians over them
#   BENCH_TMPDIR   where the data dir goes (default: $TMPDIR or /tmp)
#   BENCH_KEEP     set to 1 to keep the seeded data dir (for profiling; its path is printed)
#
# A director is started once on a fresh data dir (that runs the migrations) and stopped;
# then sqlite3 inserts the rows straight into DATA_DIR/director.db: deployments with a
# ~1.5 KB manifest (3 releases, 1 stemcell, 3 instance groups), tasks of the user-facing
# types in end states (done 90%, error 8%, cancelled 2%) spread over the deployments, with
# realistic descriptions and results (bench/lib/seed.sh). The director is then started RUNS
# times; each time each endpoint is requested REQUESTS times, one at a time, over one kept-alive
# TLS connection (`curl -w %{time_total}` with many URLs in one process, bench/lib/timing.sh),
# so TLS handshakes are not timed. Writes bench/out/director_lists.md and
# director_lists.goals.tsv.
#
# goal: GET /tasks?verbose=1&limit=30 p99 ≤ 50 ms (10,000 tasks)
# goal: GET /tasks?state=processing,cancelling,queued&verbose=1 p99 ≤ 50 ms (10,000 tasks)
# goal: GET /deployments p99 ≤ 50 ms (1,500 deployments, no instances)
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

bench_bins
TASKS=${TASKS:-10000}
DEPLOYMENTS=${DEPLOYMENTS:-1500}
REQUESTS=${REQUESTS:-200}
RUNS=${RUNS:-3}
OUT="${REPO}/bench/out/director_lists.md"
GOAL_MS=50

die() { echo "director_lists.sh: $*" >&2; exit 1; }
case "${TASKS}${DEPLOYMENTS}${REQUESTS}${RUNS}" in *[!0-9]*) die "TASKS, DEPLOYMENTS, REQUESTS and RUNS must be integers" ;; esac
[ "${DEPLOYMENTS}" -ge 1 ] && [ "${REQUESTS}" -ge 1 ] && [ "${RUNS}" -ge 1 ] ||
  die "DEPLOYMENTS, REQUESTS and RUNS must be at least 1"
[ -x "${BOSH_DIRECTOR}" ] || die "${BOSH_DIRECTOR} not found; build it first: cargo build --release -p bosh-director"
command -v sqlite3 >/dev/null || die "sqlite3 is needed (apt-get install sqlite3)"
command -v curl >/dev/null || die "curl is needed"
goal_reset director_lists

director_scratch director-lists
seed_schema "${DATA}"

echo "seeding ${DEPLOYMENTS} deployments and ${TASKS} tasks" >&2
now=$(date +%s)
sqlite3 "${DATA}/director.db" <<SQL
BEGIN;
$(seed_deployments_sql "${DEPLOYMENTS}")
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

PATHS=("/tasks" "/tasks?verbose=1&limit=30" "/tasks?state=processing,cancelling,queued&verbose=1" "/deployments")
declare -A P50 P99 MAX BODY
for run in $(seq 1 "${RUNS}"); do
  director_start "${DATA}"
  for path in "${PATHS[@]}"; do
    stats=$(endpoint_stats "${path}" "${REQUESTS}" "${WORK}") || die "GET ${path} failed"
    read -r p50 p99 mx bytes <<<"${stats}"
    P50[${path}]+="${p50} " P99[${path}]+="${p99} " MAX[${path}]+="${mx} "
    BODY[${path}]=$(bytes_human "${bytes}")
    echo "  run ${run} GET ${path}: p50 ${p50} ms, p99 ${p99} ms (${BODY[${path}]})" >&2
  done
  director_stop
done

ROWS=()
worst=0
for path in "${PATHS[@]}"; do
  # shellcheck disable=SC2086 # one number per word
  p50=$(printf '%.1f' "$(median ${P50[${path}]})")
  # shellcheck disable=SC2086
  p99=$(printf '%.1f' "$(median ${P99[${path}]})")
  # shellcheck disable=SC2086
  mx=$(max_of ${MAX[${path}]})
  ROWS+=("| \`GET ${path}\` | ${RUNS} × ${REQUESTS} | ${p50} ms | **${p99} ms** | ${mx} ms | ${BODY[${path}]} |")
  # The CLI never asks for every task at once (`bosh tasks` sends a state filter, `--recent` a
  # limit): the unlimited list is shown for information, not held to the interactive goal.
  [ "${path}" = /tasks ] && continue
  worst=$(awk -v a="${worst}" -v b="${p99}" 'BEGIN { print (b > a) ? b : a }')
  case "${path}" in
    /tasks*) size="10,000 tasks" ;;
    *) size="1,500 deployments, no instances" ;;
  esac
  goal_record director_lists "GET ${path} p99 ≤ 50 ms (${size})" \
    "${p99} ms p99 (p50 ${p50} ms; median of ${RUNS} runs × ${REQUESTS}; ${TASKS} tasks, ${DEPLOYMENTS} deployments)" \
    "${p99}" le "${GOAL_MS}"
done

verdict=$(awk -v w="${worst}" -v goal="${GOAL_MS}" 'BEGIN { print (w <= goal) ? "met" : "**missed**" }')
MACHINE=$(machine_summary)
mkdir -p "$(dirname "${OUT}")"
{
  echo "## director: task and deployment lists"
  echo
  echo "A release-build \`bosh-director\` on SQLite seeded with ${counts} (manifests of"
  echo "3 releases, 1 stemcell, 3 instance groups). The director is started ${RUNS} times; each time"
  echo "each endpoint is requested ${REQUESTS} times after 10 warm-up requests, one at a time over one"
  echo "kept-alive TLS connection (curl's \`time_total\`, so the response body is included); cells are"
  echo "medians over the runs (max: the largest over all). \`GET /tasks\` alone returns every"
  echo "user-facing task, as the Ruby director does without \`limit\`; the CLI's \`bosh tasks\` and"
  echo "\`bosh tasks --recent\` send the other two forms. Goal: p99 at most ${GOAL_MS} ms (${verdict})."
  echo
  echo "| request | requests | p50 | p99 | max | body |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Machine: ${MACHINE}. Load average when done: $(cut -d' ' -f1-3 /proc/loadavg). Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/director_lists.sh\`."
} >"${OUT}"
cat "${OUT}"
