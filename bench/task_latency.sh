#!/bin/bash
# Benchmark: task queued -> started latency (p50/p99) under load, on a release-build director
# whose database already holds 10,000 finished tasks.
#
#   bench/task_latency.sh
#
# Environment:
#   BOSH_DIRECTOR  director binary (default: $CARGO_TARGET_DIR or target, /release/bosh-director)
#   TASKS          tasks queued per run and scenario (default: 300)
#   HISTORY        finished tasks seeded in the database first (default: 10000)
#   RUNS           runs per scenario (default: 3); the table gives medians over runs
#   BENCH_TMPDIR   where the data dir goes (default: $TMPDIR or /tmp)
#
# The task: `GET /deployments/bench/vms?format=full` (what `bosh vms --vitals` sends) on a
# deployment without instances, so each task starts, lists nothing and ends: what is timed is
# the queue, not the work. bench/lib/task_load.py queues TASKS of them from several client
# threads, each polling its task every 20 ms until it ends, while 2 more threads request
# GET /deployments and GET /tasks?verbose=1&limit=30 without pause. A task's latency is from
# just before its HTTP request is sent to the director's "task started" log line (microsecond
# timestamps; the database keeps whole seconds), so it includes the request and the insert.
# Scenarios: as many submitters as the director has workers (3, the default: a task should
# find a free worker at once), and 4x as many (the queue is never empty: tasks also wait for
# a worker to finish the one before; shown for information, the goal is about the former).
# Writes bench/out/task_latency.md and task_latency.goals.tsv.
#
# goal: task queued → started p99 under load ≤ 100 ms
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
TASKS=${TASKS:-300}
HISTORY=${HISTORY:-10000}
RUNS=${RUNS:-3}
WORKERS=3
OUT="${REPO}/bench/out/task_latency.md"
GOAL_MS=100

die() { echo "task_latency.sh: $*" >&2; exit 1; }
case "${TASKS}${HISTORY}${RUNS}" in *[!0-9]*) die "TASKS, HISTORY and RUNS must be integers" ;; esac
[ "${TASKS}" -ge 1 ] && [ "${RUNS}" -ge 1 ] || die "TASKS and RUNS must be at least 1"
[ -x "${BOSH_DIRECTOR}" ] || die "${BOSH_DIRECTOR} not found; build it first: cargo build --release -p bosh-director"
for c in sqlite3 curl python3; do command -v "${c}" >/dev/null || die "${c} is needed"; done
goal_reset task_latency

director_scratch task-latency
seed_schema "${DATA}"

echo "seeding deployment 'bench' and ${HISTORY} finished tasks" >&2
now=$(date +%s)
sqlite3 "${DATA}/director.db" <<SQL
BEGIN;
INSERT INTO deployments (id, name, manifest, created_at)
VALUES ('00000000-0000-4000-8000-000000000001', 'bench', 'name: bench
releases: []
stemcells: []
instance_groups: []
', ${now});
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${HISTORY})
INSERT INTO tasks (type, state, description, payload, username, deployment, context_id,
  result, created_at, started_at, finished_at, checkpoint_at)
SELECT CASE i % 3 WHEN 0 THEN 'update_release' ELSE 'update_deployment' END,
  CASE WHEN i % 12 = 0 THEN 'error' ELSE 'done' END,
  'create deployment', '{}', 'admin', 'bench', '', '/deployments/bench',
  ${now} - (${HISTORY} - i) * 30, ${now} - (${HISTORY} - i) * 30 + 1,
  ${now} - (${HISTORY} - i) * 30 + 20, ${now} - (${HISTORY} - i) * 30 + 20
FROM n;
COMMIT;
SQL

SCENARIOS=("${WORKERS}" $((WORKERS * 4)))
declare -A P50 P99 MAX
for run in $(seq 1 "${RUNS}"); do
  # A fresh log per run; the data dir (and its growing task history) is kept.
  director_start "${DATA}"
  for subs in "${SCENARIOS[@]}"; do
    mapfile -t lines < <(python3 "${REPO}/bench/lib/task_load.py" "${DIRECTOR_URL}" "${DIRECTOR_CA}" \
      "${DIRECTOR_PASSWORD}" "/deployments/bench/vms?format=full" "${subs}" "${TASKS}" 2 \
      "${DATA}/director.err")
    [ "${#lines[@]}" -eq "${TASKS}" ] || die "expected ${TASKS} latencies, got ${#lines[@]}"
    ms=()
    for l in "${lines[@]}"; do ms+=("${l##* }"); done
    P50[${subs}]+="$(percentile 50 "${ms[@]}") "
    P99[${subs}]+="$(percentile 99 "${ms[@]}") "
    MAX[${subs}]+="$(max_of "${ms[@]}") "
    echo "  run ${run}, ${subs} submitters: p50 $(percentile 50 "${ms[@]}") ms, p99 $(percentile 99 "${ms[@]}") ms, max $(max_of "${ms[@]}") ms" >&2
  done
  director_stop
  mv "${DATA}/director.err" "${WORK}/director-${run}.err"
done

ROWS=()
for subs in "${SCENARIOS[@]}"; do
  # shellcheck disable=SC2086 # one number per word
  p50=$(printf '%.1f' "$(median ${P50[${subs}]})")
  # shellcheck disable=SC2086
  p99=$(printf '%.1f' "$(median ${P99[${subs}]})")
  # shellcheck disable=SC2086
  mx=$(max_of ${MAX[${subs}]})
  if [ "${subs}" -eq "${WORKERS}" ]; then
    goal="≤ ${GOAL_MS} ms: $(awk -v v="${p99}" -v g="${GOAL_MS}" 'BEGIN { print (v <= g) ? "met" : "**missed**" }')"
    goal_record task_latency "task queued → started p99 under load ≤ 100 ms" \
      "${p99} ms p99 (p50 ${p50} ms; ${subs} submitters = ${WORKERS} workers, median of ${RUNS} runs × ${TASKS} tasks)" \
      "${p99}" le "${GOAL_MS}"
    what="${subs} submitters = ${WORKERS} workers"
  else
    goal="(includes waiting for a busy worker)"
    what="${subs} submitters, ${WORKERS} workers"
  fi
  ROWS+=("| ${what} | ${RUNS} × ${TASKS} | ${p50} ms | **${p99} ms** | ${mx} ms | ${goal} |")
done

mkdir -p "$(dirname "${OUT}")"
{
  echo "## director: task queued → started under load"
  echo
  echo "A release-build \`bosh-director\` (SQLite, ${WORKERS} workers, the default) with ${HISTORY} finished tasks"
  echo "already in its database. Client threads queue ${TASKS} cheap tasks per run (\`GET"
  echo "/deployments/bench/vms?format=full\` on a deployment without instances) and poll each every 20 ms"
  echo "until it ends, while 2 more threads request \`GET /deployments\` and \`GET /tasks?verbose=1&limit=30\`"
  echo "without pause. Latency: from just before the task's HTTP request is sent to the director's"
  echo "\"task started\" log line (µs timestamps), so the request and the insert are included"
  echo "(\`bench/lib/task_load.py\`). Cells are medians over ${RUNS} runs (max: largest over all)."
  echo
  echo "| scenario | tasks | p50 | p99 | max | goal |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Machine: $(machine_summary); load average when done: $(cut -d' ' -f1-3 /proc/loadavg). Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/task_latency.sh\`."
} >"${OUT}"
cat "${OUT}"
