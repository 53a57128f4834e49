#!/bin/bash
# Agent memory: resident set size idle (connected to a TLS nats-server, heartbeats every
# second) and the peak while `apply` installs a 64 MiB package (over the HTTPS mbus, driven
# with curl). Readings are VmRSS / VmHWM from /proc/<pid>/status of the release binary.
#
#   IDLE_SECS=10   how long to watch the idle agent (one reading per second)
#   PACKAGE_MB=64  size of the random file inside the applied package
#
# Writes bench/out/agent_rss.md and agent_rss.goals.tsv (the busy peak is shown beside it).
#
# goal: agent RSS idle ≤ 10 MB
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "${REPO}/bench/lib/common.sh"
source "${REPO}/bench/lib/agent.sh"
require_bins "${BOSH_AGENT}"
command -v nats-server >/dev/null || { echo "nats-server is not installed" >&2; exit 1; }
IDLE_SECS=${IDLE_SECS:-10}
PACKAGE_MB=${PACKAGE_MB:-64}
goal_reset agent_rss

TMP=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/agent-rss.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "${p}" 2>/dev/null || true; done
  rm -rf "${TMP}"
}
trap cleanup EXIT
make_pki "${TMP}/pki"

# Idle, on NATS.
nats_port=$(free_port)
pids+=("$(start_nats "${TMP}/pki" "${nats_port}")")
wait_port "${nats_port}" 10 || { cat "${TMP}/pki/nats.log"; exit 1; }
write_agent_settings "${TMP}/nats-agent" "bench-nats" "nats://127.0.0.1:${nats_port}" \
  "$(mbus_cert_json "${TMP}/pki" agent)"
agent=$(BOSH_AGENT_HEARTBEAT_INTERVAL=1 start_agent "${TMP}/nats-agent" "${TMP}/nats-agent.log")
pids+=("${agent}")
sleep 2 # connect and settle before the first reading
idle=()
for _ in $(seq "${IDLE_SECS}"); do
  kill -0 "${agent}" 2>/dev/null || { cat "${TMP}/nats-agent.log"; exit 1; }
  idle+=("$(kib "${agent}" VmRSS)")
  sleep 1
done
idle_hwm=$(kib "${agent}" VmHWM)
idle_anon=$(kib "${agent}" RssAnon)
idle_file=$(kib "${agent}" RssFile)
threads=$(awk '$1 == "Threads:" { print $2 }' "/proc/${agent}/status")
grep -q "mbus event" "${TMP}/nats-agent.log" || { echo "agent never connected" >&2; cat "${TMP}/nats-agent.log"; exit 1; }
kill "${agent}"

# Apply, on HTTPS.
port=$(free_port)
url="https://127.0.0.1:${port}"
write_agent_settings "${TMP}/https-agent" "bench-https" "https://mbus:pw@127.0.0.1:${port}" \
  "$(mbus_cert_json "${TMP}/pki" server)"
agent=$(start_agent "${TMP}/https-agent" "${TMP}/https-agent.log")
pids+=("${agent}")
wait_port "${port}" 10 || { cat "${TMP}/https-agent.log"; exit 1; }
sleep 1
https_idle=$(kib "${agent}" VmRSS)

mkdir -p "${TMP}/pkg"
head -c "${PACKAGE_MB}M" /dev/urandom >"${TMP}/pkg/blob.bin"
tar -C "${TMP}/pkg" -czf "${TMP}/pkg.tgz" blob.bin
mkdir -p "${TMP}/job/web"
printf 'check process web\n  with pidfile /var/vcap/sys/run/web/web.pid\n  start program "/bin/true"\n  group vcap\n' >"${TMP}/job/web/monit"
tar -C "${TMP}/job" -czf "${TMP}/job.tgz" ./web
curl -sS --fail --cacert "${TMP}/pki/ca.crt" -u mbus:pw -T "${TMP}/pkg.tgz" "${url}/blobs/pkg-1"
curl -sS --fail --cacert "${TMP}/pki/ca.crt" -u mbus:pw -T "${TMP}/job.tgz" "${url}/blobs/job-1"
before_apply_hwm=$(kib "${agent}" VmHWM)
spec=$(jq -n --arg pkg "sha256:$(sha256sum "${TMP}/pkg.tgz" | cut -d' ' -f1)" \
  --arg job "$(sha1sum "${TMP}/job.tgz" | cut -d' ' -f1)" '{
  deployment: "bench", name: "g", id: "i-1", index: 0,
  job: {name: "g", templates: [{name: "web", version: "1"}]},
  packages: {big: {name: "big", version: "1", sha1: $pkg, blobstore_id: "pkg-1"}},
  networks: {a: {type: "manual", ip: "127.0.0.1", netmask: "255.0.0.0", default: ["dns", "gateway"]}},
  configuration_hash: "c1", rendered_templates_archive: {blobstore_id: "job-1", sha1: $job}}')
start=$(now_s)
task=$(agent_call "${url}" mbus:pw "${TMP}/pki/ca.crt" apply "[${spec}]" | jq -r .value.agent_task_id)
peak=0
while :; do
  rss=$(kib "${agent}" VmRSS)
  [ "${rss}" -gt "${peak}" ] && peak=${rss}
  reply=$(agent_call "${url}" mbus:pw "${TMP}/pki/ca.crt" get_task "[\"${task}\"]")
  [ "$(jq -r '(.value | objects | .state) // empty' <<<"${reply}")" = running ] || break
done
elapsed=$(awk -v a="${start}" -v b="$(now_s)" 'BEGIN { printf "%.2f", b - a }')
[ "$(jq -r .value <<<"${reply}")" = applied ] || { echo "apply failed: ${reply}" >&2; exit 1; }
apply_hwm=$(kib "${agent}" VmHWM)
after_rss=$(kib "${agent}" VmRSS)

idle_med=$(median "${idle[@]}")
idle_mb=$(awk -v k="${idle_med}" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }')
goal_record agent_rss "agent RSS idle ≤ 10 MB" \
  "${idle_mb} MB ($(mib "${idle_med}")) idle on NATS, median of ${#idle[@]} readings; busy: VmHWM $(mib "${apply_hwm}") during a ${PACKAGE_MB} MiB apply ($(basename "$(dirname "${BOSH_AGENT}")") build)" \
  "${idle_mb}" le 10
mkdir -p "${REPO}/bench/out"
{
  echo "## Agent memory"
  echo
  echo "\`bosh-agent\` built with $(agent_build), on the dummy platform. Idle: connected to a TLS nats-server with a"
  echo "client certificate, heartbeats every second, no jobs; VmRSS read once a second for"
  echo "${IDLE_SECS} s. Apply: over the HTTPS mbus, \`apply\` of a spec with one ${PACKAGE_MB} MiB package"
  echo "(gzip of random bytes, digest-checked and unpacked) and one job, polled with \`get_task\`."
  echo
  echo "| reading | value |"
  echo "|---|---|"
  echo "| idle VmRSS, median of ${#idle[@]} (NATS) | **$(mib "$(median "${idle[@]}")")** |"
  echo "| idle VmHWM (NATS) | $(mib "${idle_hwm}") |"
  echo "| of which anonymous / file-backed (NATS) | $(mib "${idle_anon}") / $(mib "${idle_file}") |"
  echo "| threads (NATS, idle) | ${threads} |"
  echo "| idle VmRSS (HTTPS mbus) | $(mib "${https_idle}") |"
  echo "| VmHWM after uploading the blobs (HTTPS) | $(mib "${before_apply_hwm}") |"
  echo "| peak VmRSS sampled during apply | $(mib "${peak}") |"
  echo "| VmHWM after apply | **$(mib "${apply_hwm}")** |"
  echo "| VmRSS after apply | $(mib "${after_rss}") |"
  echo "| apply wall time | ${elapsed} s |"
  echo
  echo "Goal: ≤ 10 MB idle. Machine: $(machine_summary). Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/agent_rss.sh\`."
} | tee "${REPO}/bench/out/agent_rss.md"
