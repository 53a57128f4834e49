#!/bin/bash
# External CPI call overhead: CALLS `info` calls to the release `bosh-sim-cpi`, one process per
# call (as BOSH runs CPIs) versus one persistent worker (BOSH_CPI_WORKER=1, one request per
# line). `info` does no work, so the time is the per-call cost of the transport itself.
#
#   CALLS=200   calls per mode
#   RUNS=3      timed runs per mode (median reported)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "${REPO}/bench/lib/common.sh"
source "${REPO}/bench/lib/agent.sh"
require_bins "${BOSH_SIM_CPI}"
CALLS=${CALLS:-200}
RUNS=${RUNS:-3}

TMP=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/cpi-overhead.XXXXXX")
trap 'rm -rf "${TMP}"' EXIT
jq -n --arg root "${TMP}/root" '{root_dir: $root,
  agent: {command: ["/bin/false"], mbus: "nats://127.0.0.1:4222", platform: "dummy", job_supervisor: "dummy-nats"}}' >"${TMP}/cpi.json"
req='{"method":"info","arguments":[],"context":{"director_uuid":"bench","request_id":"cpi-1"}}'
for _ in $(seq "${CALLS}"); do echo "${req}"; done >"${TMP}/requests"
export BOSH_SIM_CPI_LOG=warn

fork_runs=()
worker_runs=()
for _ in $(seq "${RUNS}"); do
  start=$(now_s)
  for _ in $(seq "${CALLS}"); do
    "${BOSH_SIM_CPI}" -configPath "${TMP}/cpi.json" <<<"${req}" >"${TMP}/out" 2>/dev/null
  done
  fork_runs+=("$(awk -v a="${start}" -v b="$(now_s)" 'BEGIN { print b - a }')")
  grep -q '"api_version"' "${TMP}/out" || { echo "fork mode: bad answer: $(cat "${TMP}/out")" >&2; exit 1; }

  start=$(now_s)
  BOSH_CPI_WORKER=1 "${BOSH_SIM_CPI}" -configPath "${TMP}/cpi.json" <"${TMP}/requests" >"${TMP}/out" 2>/dev/null
  worker_runs+=("$(awk -v a="${start}" -v b="$(now_s)" 'BEGIN { print b - a }')")
  answers=$(grep -c '"api_version"' "${TMP}/out")
  [ "${answers}" -eq "${CALLS}" ] || { echo "worker mode: ${answers} answers for ${CALLS} calls" >&2; exit 1; }
done

per_call() { awk -v t="$1" -v n="${CALLS}" 'BEGIN { printf "%.3f ms", t * 1000 / n }'; }
fork=$(median "${fork_runs[@]}")
worker=$(median "${worker_runs[@]}")
mkdir -p "${REPO}/bench/out"
{
  echo "## External CPI call overhead"
  echo
  echo "${CALLS} \`info\` calls to the release \`bosh-sim-cpi\` (which does no work for \`info\`):"
  echo "one process per call, as BOSH runs CPIs, versus one persistent worker answering one"
  echo "request per line (\`ExternalCpiConfig::workers\`). Median of ${RUNS} runs; the shell's own"
  echo "fork/exec is part of the fork-mode number, as the director's is."
  echo
  echo "| mode | ${CALLS} calls | per call |"
  echo "|---|---|---|"
  echo "| fork per call | $(printf '%.3f s' "${fork}") | **$(per_call "${fork}")** |"
  echo "| persistent worker | $(printf '%.3f s' "${worker}") | **$(per_call "${worker}")** |"
  echo
  echo "Machine: $(machine_summary). Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/cpi_overhead.sh\`."
} | tee "${REPO}/bench/out/cpi_overhead.md"
