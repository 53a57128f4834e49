# Helpers for the agent and CPI benchmarks (sourced, not run): a throwaway PKI made with
# openssl, agent settings files, nats-server, and /proc memory readings.

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TARGET_DIR=${CARGO_TARGET_DIR:-${REPO}/target}
# The size-optimised `agent` profile (what stemcells should ship) when built, else release.
if [ -z "${BOSH_AGENT:-}" ]; then
  BOSH_AGENT=${TARGET_DIR}/agent/bosh-agent
  [ -x "${BOSH_AGENT}" ] || BOSH_AGENT=${TARGET_DIR}/release/bosh-agent
fi
BOSH_SIM_CPI=${BOSH_SIM_CPI:-${TARGET_DIR}/release/bosh-sim-cpi}

require_bins() {
  local b
  for b in "$@"; do
    [ -x "${b}" ] || {
      echo "missing ${b}: cargo build --release -p bosh-cpi && cargo build --profile agent -p bosh-agent" >&2
      exit 1
    }
  done
}

# make_pki DIR: ca.crt, server.{crt,key} (CN default.nats.bosh-internal, SAN 127.0.0.1),
# agent.{crt,key} (client auth). P-256 keys: quick to make, accepted by rustls.
make_pki() {
  local d=$1 ext
  mkdir -p "${d}"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "${d}/ca.key" -out "${d}/ca.crt" -subj "/CN=bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=keyCertSign,cRLSign" 2>/dev/null
  for who in server agent; do
    if [ "${who}" = server ]; then
      ext="subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature"
      subj="/O=Cloud Foundry/CN=default.nats.bosh-internal"
    else
      ext="extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature"
      subj="/O=Cloud Foundry/CN=bench.agent.bosh-internal"
    fi
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "${d}/${who}.key" -out "${d}/${who}.csr" -subj "${subj}" 2>/dev/null
    openssl x509 -req -in "${d}/${who}.csr" -CA "${d}/ca.crt" -CAkey "${d}/ca.key" \
      -CAcreateserial -days 2 -out "${d}/${who}.crt" -extfile <(printf "${ext}") 2>/dev/null
  done
}

# mbus_cert_json DIR WHO: {"ca", "certificate", "private_key"} for WHO (agent or server).
mbus_cert_json() {
  jq -n --rawfile ca "$1/ca.crt" --rawfile c "$1/$2.crt" --rawfile k "$1/$2.key" \
    '{ca: $ca, certificate: $c, private_key: $k}'
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# write_agent_settings BASE AGENT_ID MBUS_URL CERT_JSON: agent.json + the settings file.
write_agent_settings() {
  local base=$1 id=$2 mbus=$3 cert=$4
  mkdir -p "${base}/bosh" "${base}/blobs"
  jq -n --arg p "${base}/bosh/settings.json" \
    '{Infrastructure: {Settings: {Sources: [{Type: "File", SettingsPath: $p}]}}}' >"${base}/agent.json"
  jq -n --arg id "${id}" --arg mbus "${mbus}" --arg blobs "${base}/blobs" --argjson cert "${cert}" '{
    agent_id: $id, mbus: $mbus, ntp: [], disks: {persistent: {}}, vm: {name: ("vm-" + $id)},
    blobstore: {provider: "local", options: {blobstore_path: $blobs}},
    networks: {a: {type: "manual", ip: "127.0.0.1", netmask: "255.0.0.0", default: ["dns", "gateway"]}},
    env: {bosh: {mbus: {cert: $cert}}}}' >"${base}/bosh/settings.json"
}

# agent_build: which build of the agent is measured.
agent_build() {
  case "${BOSH_AGENT}" in
    */agent/bosh-agent) echo "\`--profile agent\` (opt-level s, fat LTO, 1 codegen unit, stripped)" ;;
    */release/bosh-agent) echo "\`--release\`" ;;
    *) echo "\`${BOSH_AGENT}\`" ;;
  esac
}

# start_agent BASE LOG: starts the agent in the background; prints its pid.
start_agent() {
  BOSH_AGENT_HEARTBEAT_INTERVAL=${BOSH_AGENT_HEARTBEAT_INTERVAL:-30} RUST_LOG=${RUST_LOG:-info} \
    "${BOSH_AGENT}" -b "$1" -P dummy -M dummy-nats -C "$1/agent.json" </dev/null >"$2" 2>&1 &
  echo $!
}

# start_nats DIR PORT: nats-server with TLS and client certificates required; prints its pid.
start_nats() {
  cat >"$1/nats.conf" <<EOF
listen: 127.0.0.1:$2
tls { cert_file: "$1/server.crt", key_file: "$1/server.key", ca_file: "$1/ca.crt", verify: true, timeout: 5 }
EOF
  nats-server -c "$1/nats.conf" >"$1/nats.log" 2>&1 &
  echo $!
}

# kib PID FIELD: a /proc/PID/status field (VmRSS, VmHWM) in KiB.
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

# wait_port PORT SECONDS: until something listens on 127.0.0.1:PORT.
wait_port() {
  local deadline=$(($(date +%s) + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ "$(date +%s)" -lt "${deadline}" ] || return 1
    sleep 0.05
  done
}

# agent_call URL USER:PASS CA METHOD ARGS_JSON: one request over the HTTPS mbus.
agent_call() {
  curl -sS --fail --cacert "$3" -u "$2" -H 'Content-Type: application/json' \
    -d "{\"method\":\"$4\",\"arguments\":$5}" "$1/agent"
}
