#!/bin/bash
# Benchmark: a fresh deploy of INSTANCES instances in 3 instance groups on the sim CPI (VMs are
# agent processes on this host), the director's overhead per instance during it, and then the
# no-op redeploy of the same manifest, RUNS times.
#
#   bench/deploy_noop.sh
#
# Environment:
#   BOSH_DIRECTOR, BOSH_RS  binaries under test (default: ${CARGO_TARGET_DIR:-target}/release/…)
#   BOSH_AGENT_BIN          agent the sim CPI starts (default: the size-optimised `agent`
#                           profile build when it is newer than the release one)
#   INSTANCES               instances in all (default 175, split over 3 groups)
#   MAX_IN_FLIGHT           per AZ (default 30)
#   RUNS                    timed no-op redeploys (default 5)
#   FRESH_RUNS              fresh deploys (default 3; each but the last deleted again)
#   BENCH_TMPDIR            scratch dir location (default $TMPDIR or /tmp)
#
# The release is generated here (bench/lib/deploy.sh: idler_release): one job whose process is a
# `sleep` started by a ctl script that writes its pidfile, so that 175 VMs cost little more than
# 175 agents. Each fresh deploy is timed with the CLI; the director's overhead comes from
# bench/lib/deploy_timeline.py (task time minus the time some CPI or agent call was
# outstanding; see there); medians over FRESH_RUNS. Each no-op redeploy
# is timed twice: by the CLI end to end (it polls the task every 500 ms, as the official CLI)
# and by the director's own log ("task started" .. "task ended").
# On exit, also on Ctrl-C, the deployment is deleted and any process left under the scratch
# dir is killed by pid. Writes bench/out/deploy_noop.md and deploy_noop.goals.tsv.
#
# goal: no-op redeploy of 175 instances in 3 groups, sim CPI ≤ 2 s
# goal: fresh deploy of 175 agent-process VMs: director overhead per instance ≤ 20 ms
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib/common.sh
source "${REPO}/bench/lib/common.sh"
# shellcheck source=bench/lib/director.sh
source "${REPO}/bench/lib/director.sh"
# shellcheck source=bench/lib/deploy.sh
source "${REPO}/bench/lib/deploy.sh"

agent_given=${BOSH_AGENT_BIN:-}
bench_bins
if [ -z "${agent_given}" ] && [ "${TARGET}/agent/bosh-agent" -nt "${BOSH_AGENT_BIN}" ]; then
  # the `agent` profile build only when it is not older than the release one
  export BOSH_AGENT_BIN=${TARGET}/agent/bosh-agent
fi
INSTANCES=${INSTANCES:-175}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-30}
RUNS=${RUNS:-5}
FRESH_RUNS=${FRESH_RUNS:-3}
OUT="${REPO}/bench/out/deploy_noop.md"
GOAL_NOOP_S=2
GOAL_OVERHEAD_MS=20
DEPLOYMENT=bench-noop

die() { echo "deploy_noop.sh: $*" >&2; exit 1; }
case "${INSTANCES}${RUNS}${FRESH_RUNS}${MAX_IN_FLIGHT}" in *[!0-9]*) die "INSTANCES, RUNS, FRESH_RUNS, MAX_IN_FLIGHT must be integers" ;; esac
[ "${INSTANCES}" -ge 3 ] || die "INSTANCES must be at least 3"
[ "${RUNS}" -ge 1 ] && [ "${FRESH_RUNS}" -ge 1 ] || die "RUNS and FRESH_RUNS must be at least 1"
deploy_require deploy_noop.sh
goal_reset deploy_noop

deploy_scratch deploy-noop
DEPLOYED=
trap 'deploy_cleanup "${DEPLOYED}"' EXIT
trap 'exit 130' INT TERM

idler_release "${LOG}" idle "${WORK}/idle.tgz"
deploy_env_start "${LOG}" "${WORK}/idle.tgz"
sim_cloud_config_update "${LOG}" 127.2.0.0/22 z1 z2
a=$((INSTANCES / 3))
b=$(((INSTANCES - a) / 2))
c=$((INSTANCES - a - b))
idler_manifest "${DEPLOYMENT}" idle z1,z2 "${MAX_IN_FLIGHT}" "web=${a}" "worker=${b}" "cache=${c}" \
  >"${WORK}/manifest.yml"

# ------------------------------------------------------------ fresh deploys
# FRESH_RUNS times: deploy, measure, and (but the last time) delete the deployment again.
fresh_walls=() overheads=()
for run in $(seq 1 "${FRESH_RUNS}"); do
  echo "fresh deploy ${run}/${FRESH_RUNS} of ${INSTANCES} instances (${a}/${b}/${c}, max_in_flight ${MAX_IN_FLIGHT} per AZ)" >&2
  : >"${WORK}/fresh-${run}.log"
  DEPLOYED=${DEPLOYMENT}
  t0=$(now_s)
  bosh "${WORK}/fresh-${run}.log" -n -d "${DEPLOYMENT}" deploy "${WORK}/manifest.yml"
  fresh_walls+=("$(elapsed "${t0}")")
  fresh_task=$(task_of "${WORK}/fresh-${run}.log")
  running=$("${BOSH_RS}" -d "${DEPLOYMENT}" instances --json | jq '[.Tables[0].Rows[] | select(.process_state == "running")] | length')
  echo "fresh deploy ${run}: ${fresh_walls[-1]} s (task ${fresh_task}), ${running} instances running" >&2
  [ "${running}" -eq "${INSTANCES}" ] || die "only ${running} of ${INSTANCES} instances run after the fresh deploy"
  # T_* for this run; the text below describes the last run's
  eval "$(python3 "${REPO}/bench/lib/deploy_timeline.py" "${DATA}" "${fresh_task}" \
    "${WORK}/director/nats-trace" "${INSTANCES}" | sed -E "s/^([a-z0-9_]+)=(.*)$/T_\1='\2'/")"
  overheads+=("${T_overhead_per_instance_ms}")
  [ "${run}" -lt "${FRESH_RUNS}" ] || break
  t0=$(now_s)
  bosh "${WORK}/delete-${run}.log" -n -d "${DEPLOYMENT}" delete-deployment
  echo "deleted in $(elapsed "${t0}") s" >&2
done
fresh_wall=$(median "${fresh_walls[@]}")
overhead_med=$(median "${overheads[@]}")

# memory of the VMs: every agent and job process under the scratch dir, not the director
sleep 2
mapfile -t vm_pids < <(work_pids)
agents=() jobs=()
for p in "${vm_pids[@]}"; do
  case "$(tr '\0' ' ' <"/proc/${p}/cmdline" 2>/dev/null)" in
    *bosh-agent*) agents+=("${p}") ;;
    sleep*) jobs+=("${p}") ;;
  esac
done
agent_rss_kib=$(rss_sum_kib "${agents[@]}")
job_rss_kib=$(rss_sum_kib "${jobs[@]}")
director_rss_kib=$(proc_kib "${DIRECTOR_PID}" VmRSS)
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
per_agent_mib=$(awk -v k="${agent_rss_kib}" -v n="${#agents[@]}" 'BEGIN { printf "%.1f", n ? k / n / 1024 : 0 }')
echo "RSS: ${#agents[@]} agents $(mib "${agent_rss_kib}") MiB, ${#jobs[@]} job processes $(mib "${job_rss_kib}") MiB, director $(mib "${director_rss_kib}") MiB" >&2

# ------------------------------------------------------------ no-op redeploys
cli_times=() task_times=() noop_cpi=0 noop_updates=0
for i in $(seq 1 "${RUNS}"); do
  : >"${WORK}/noop-${i}.log"
  t0=$(now_s)
  bosh "${WORK}/noop-${i}.log" -n -d "${DEPLOYMENT}" deploy "${WORK}/manifest.yml"
  cli_times+=("$(elapsed "${t0}")")
  id=$(task_of "${WORK}/noop-${i}.log")
  task_times+=("$(task_secs "${DATA}" "${id}")")
  # a no-op must touch nothing: no CPI call, no "Updating instance" stage
  noop_cpi=$((noop_cpi + $(grep -c ' request: ' "${DATA}/tasks/${id}/cpi" || true)))
  noop_updates=$((noop_updates + $(grep -c '"stage":"Updating instance"' "${DATA}/tasks/${id}/event" || true)))
  echo "no-op ${i}: CLI ${cli_times[-1]} s, task ${task_times[-1]} s" >&2
done
cli_med=$(median "${cli_times[@]}")
task_med=$(median "${task_times[@]}")

verdict() { awk -v v="$1" -v g="$2" 'BEGIN { print (v <= g) ? "met" : "missed" }'; }
noop_verdict=$(verdict "${cli_med}" "${GOAL_NOOP_S}")
overhead_verdict=$(verdict "${overhead_med}" "${GOAL_OVERHEAD_MS}")
goal_record deploy_noop "no-op redeploy of 175 instances in 3 groups, sim CPI ≤ 2 s" \
  "${cli_med} s CLI end to end, ${INSTANCES} instances (median of ${RUNS}; director task ${task_med} s)" \
  "${cli_med}" le "${GOAL_NOOP_S}"
goal_record deploy_noop "fresh deploy of 175 agent-process VMs: director overhead per instance ≤ 20 ms" \
  "${overhead_med} ms, ${INSTANCES} instances (median of ${FRESH_RUNS} fresh deploys, $(min_of "${overheads[@]}")–$(max_of "${overheads[@]}"))" \
  "${overhead_med}" le "${GOAL_OVERHEAD_MS}"

mkdir -p "$(dirname "${OUT}")"
{
  echo "## deploy: ${INSTANCES} instances on the sim CPI, fresh and no-op"
  echo
  echo "A generated release with one job (a \`sleep\` started by a ctl script that writes its"
  echo "pidfile), ${INSTANCES} instances in 3 instance groups (${a}/${b}/${c}) over 2 AZs on a loopback"
  echo "manual network (127.2.0.0/22), canaries 1, max_in_flight ${MAX_IN_FLIGHT} per AZ, watch time"
  echo "1000-30000 ms; release-build \`bosh-director\` (SQLite, local blobstore, its own nats-server),"
  echo "sim VMs are \`$(basename "$(dirname "${BOSH_AGENT_BIN}")")\`-profile \`bosh-agent\` processes. The no-op redeploy"
  echo "sends the same manifest again; it made ${noop_cpi} CPI calls and had ${noop_updates} \"Updating instance\" stages in all runs."
  echo
  echo "| measurement | runs | median | min | max | goal |"
  echo "|---|---|---|---|---|---|"
  echo "| no-op redeploy, CLI end to end (\`bosh-rs -n deploy\`) | ${RUNS} | **${cli_med} s** | $(min_of "${cli_times[@]}") s | $(max_of "${cli_times[@]}") s | ≤ ${GOAL_NOOP_S} s (BOSH: 130 s): ${noop_verdict} |"
  echo "| no-op redeploy, director task (log timestamps) | ${RUNS} | **${task_med} s** | $(min_of "${task_times[@]}") s | $(max_of "${task_times[@]}") s | |"
  echo "| fresh deploy, CLI end to end | ${FRESH_RUNS} | ${fresh_wall} s | $(min_of "${fresh_walls[@]}") s | $(max_of "${fresh_walls[@]}") s | |"
  echo "| fresh deploy: director overhead per instance | ${FRESH_RUNS} | **${overhead_med} ms** | $(min_of "${overheads[@]}") ms | $(max_of "${overheads[@]}") ms | ≤ ${GOAL_OVERHEAD_MS} ms: ${overhead_verdict} |"
  echo
  echo "Each fresh deploy but the last is deleted before the next. Director overhead, last run: the task ran ${T_task_s} s; some CPI or agent call was"
  echo "outstanding (or the director was sleeping on an agent: get_task polls, ping retries while"
  echo "an agent boots, the watch time) during ${T_external_s} s of it; the remaining ${T_overhead_s} s,"
  echo "divided by ${INSTANCES} instances, is ${T_overhead_per_instance_ms} ms (${T_cpi_calls} CPI calls from the"
  echo "${T_cpi_source}, ${T_agent_calls} agent requests from a nats-server trace that keeps subjects and"
  echo "times only; \`bench/lib/deploy_timeline.py\`). On each instance's own chain of calls"
  echo "(create_vm … ping, then apply … post-start), the director's gaps were median"
  echo "${T_chain_median_ms} ms, p90 ${T_chain_p90_ms} ms, max ${T_chain_max_ms} ms per instance."
  echo "Largest director-only stretches: ${T_top_gaps}."
  echo
  echo "Memory after the fresh deploy: ${#agents[@]} agents $(mib "${agent_rss_kib}") MiB RSS in all"
  echo "(${per_agent_mib} MiB each), ${#jobs[@]} job processes $(mib "${job_rss_kib}") MiB, director $(mib "${director_rss_kib}") MiB."
  echo
  echo "Machine: $(machine_summary). Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/deploy_noop.sh\`."
} >"${OUT}"
cat "${OUT}"
