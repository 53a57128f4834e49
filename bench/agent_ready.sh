#!/bin/bash
# Sim `create_vm` → agent ready: the time from invoking the release `bosh-sim-cpi` executable
# with `create_vm` (a fork, as the director does) until the new VM's release `bosh-agent`
# answers `ping` with `pong`. The agent listens on the HTTPS mbus (the create-env path, which
# needs no NATS client in a shell script); ping is retried back to back with curl.
#
#   RUNS=7   VMs created (and deleted) one after the other
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "${REPO}/bench/lib/common.sh"
source "${REPO}/bench/lib/agent.sh"
require_bins "${BOSH_AGENT}" "${BOSH_SIM_CPI}"
RUNS=${RUNS:-7}

TMP=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/agent-ready.XXXXXX")
vms=()
cpi() { "${BOSH_SIM_CPI}" -configPath "${TMP}/cpi.json" 2>>"${TMP}/cpi.log"; }
cleanup() {
  for vm in "${vms[@]}"; do
    echo "{\"method\":\"delete_vm\",\"arguments\":[\"${vm}\"],\"context\":{\"director_uuid\":\"bench\"}}" | cpi >/dev/null || true
  done
  rm -rf "${TMP}"
}
trap cleanup EXIT
make_pki "${TMP}/pki"
port=$(free_port)
url="https://127.0.0.1:${port}"
jq -n --arg root "${TMP}/root" --arg agent "${BOSH_AGENT}" --arg mbus "https://mbus:pw@127.0.0.1:${port}" '{
  root_dir: $root, agent: {command: [$agent], mbus: $mbus, platform: "dummy", job_supervisor: "dummy-nats"}}' >"${TMP}/cpi.json"
mkdir -p "${TMP}/stemcell"
: >"${TMP}/stemcell/image"
echo "name: sim" >"${TMP}/stemcell/stemcell.MF"
stemcell=$(jq -n --arg img "${TMP}/stemcell/image" \
  '{method: "create_stemcell", arguments: [$img, {}], context: {director_uuid: "bench"}, api_version: 2}' | cpi | jq -r .result)
[ -n "${stemcell}" ] && [ "${stemcell}" != null ] || { cat "${TMP}/cpi.log"; exit 1; }
cert=$(mbus_cert_json "${TMP}/pki" server)

times=()
for i in $(seq "${RUNS}"); do
  req=$(jq -n --arg sc "${stemcell}" --arg id "$(python3 -c "import uuid; print(uuid.uuid4())")" --argjson cert "${cert}" '{
    method: "create_vm", api_version: 2, context: {director_uuid: "bench"},
    arguments: [$id, $sc, {}, {a: {type: "manual", ip: "127.1.0.5", netmask: "255.255.255.0",
      default: ["dns", "gateway"], cloud_properties: {}}}, [], {bosh: {mbus: {cert: $cert}}}]}')
  start=$(now_s)
  vm=$(cpi <<<"${req}" | jq -r '.result[0]')
  [ -n "${vm}" ] && [ "${vm}" != null ] || { cat "${TMP}/cpi.log"; exit 1; }
  vms+=("${vm}")
  deadline=$(($(date +%s) + 30))
  until agent_call "${url}" mbus:pw "${TMP}/pki/ca.crt" ping '[]' 2>/dev/null | grep -q pong; do
    [ "$(date +%s)" -lt "${deadline}" ] || { echo "VM ${vm} never answered ping" >&2; exit 1; }
  done
  times+=("$(awk -v a="${start}" -v b="$(now_s)" 'BEGIN { printf "%.3f", b - a }')")
  echo "{\"method\":\"delete_vm\",\"arguments\":[\"${vm}\"],\"context\":{\"director_uuid\":\"bench\"},\"api_version\":2}" | cpi >/dev/null
  vms=()
done

mkdir -p "${REPO}/bench/out"
ms() { awk -v s="$1" 'BEGIN { printf "%.0f ms", s * 1000 }'; }
{
  echo "## Sim create_vm → agent ready"
  echo
  echo "From invoking the release \`bosh-sim-cpi\` with \`create_vm\` (one process, as the director"
  echo "forks it) until the VM's \`bosh-agent\` ($(agent_build)) answers \`ping\` over the HTTPS mbus (curl,"
  echo "retried back to back; TLS handshake included). Each VM is deleted before the next."
  echo
  echo "| runs | median | min | max |"
  echo "|---|---|---|---|"
  echo "| ${RUNS} | **$(ms "$(median "${times[@]}")")** | $(ms "$(min_of "${times[@]}")") | $(ms "$(max_of "${times[@]}")") |"
  echo
  echo "Machine: $(machine_summary). Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/agent_ready.sh\`."
} | tee "${REPO}/bench/out/agent_ready.md"
