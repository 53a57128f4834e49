#!/usr/bin/env bash
# The main job: a local director with the embedded defaults, the example release built,
# uploaded and deployed (3 greeter servers and a proxy that finds them through a link),
# then the service answering. Everything lives in a scratch dir, so running it twice is
# safe and the repository stays clean.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
BOSH_RS=${BOSH_RS:-$target/release/bosh-rs}
bin_dir=$(dirname "$BOSH_RS")
manifests=$here/examples/manifests

work=$(mktemp -d "${TMPDIR:-/tmp}/bosh-rs-demo.XXXXXX")
director_pid=""
# The Docker CPI when an engine answers (VMs are containers), else the sim CPI.
cpi=sim
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then cpi=docker; fi
# Docker objects the demo makes carry this prefix, so cleanup finds them even after a failure.
prefix=bosh-rs-demo-$$-
made_network=""
cleanup() {
  if [ -n "$director_pid" ]; then
    kill "$director_pid" 2>/dev/null || true
    wait "$director_pid" 2>/dev/null || true
  fi
  if [ "$cpi" = docker ]; then
    docker ps -aq --filter "name=$prefix" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
    docker volume ls -q --filter "name=$prefix" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
    docker images --format '{{.Repository}}:{{.Tag}}' | grep -F "$prefix" |
      xargs -r docker rmi -f >/dev/null 2>&1 || true
    if [ -n "$made_network" ]; then docker network rm bosh-rs >/dev/null 2>&1 || true; fi
  fi
  # sim VMs are agent processes whose command lines name their dir under $work
  pkill -f "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# A private HOME keeps the demo's ~/.bosh apart from the user's.
export HOME=$work/home
mkdir -p "$HOME"

step=0
step() {
  step=$((step + 1))
  printf '\n\033[1m== %d. %s\033[0m\n' "$step" "$*"
}
run() {
  printf '$ bosh-rs %s\n' "$*"
  "$BOSH_RS" "$@"
}
elapsed() { printf '(%ss)\n' "$(($(date +%s) - $1))"; }

# The release directory needs its own git repo and blobstore: work on a copy.
cp -R "$here/examples/greeter-release" "$work/greeter-release"
sed -i "s#blobstore_path: .*#blobstore_path: $work/blobstore#" "$work/greeter-release/config/final.yml"
(cd "$work/greeter-release" && git init -q . && git add -A &&
  git -c user.name=demo -c user.email=demo@localhost commit -qm "greeter release")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
config=()
if [ "$cpi" = docker ]; then
  step "Start a director: SQLite, local blobstore, its own NATS, the Docker CPI (VMs are containers)"
  docker network inspect bosh-rs >/dev/null 2>&1 || made_network=yes
  printf 'docker:\n  name_prefix: %s\n' "$prefix" >"$work/director.yml"
  config=(--config "$work/director.yml")
else
  step "Start a director: SQLite, local blobstore, its own NATS, the sim CPI (VMs are agent processes)"
fi
"$bin_dir/bosh-director" --data-dir "$work/director" --listen "127.0.0.1:$port" --cpi "$cpi" \
  ${config[@]+"${config[@]}"} >"$work/director.log" 2>&1 &
director_pid=$!
for _ in $(seq 1 300); do
  if [ -s "$work/director/credentials.yml" ] &&
    curl -sf --cacert "$work/director/ca.crt" "https://127.0.0.1:$port/info" >/dev/null; then
    break
  fi
  kill -0 "$director_pid" 2>/dev/null || { cat "$work/director.log"; exit 1; }
  sleep 0.1
done
export BOSH_ENVIRONMENT=https://127.0.0.1:$port
export BOSH_CA_CERT=$work/director/ca.crt
export BOSH_CLIENT=admin
BOSH_CLIENT_SECRET=$(sed -n 's/^password: *//p' "$work/director/credentials.yml")
export BOSH_CLIENT_SECRET
export BOSH_DEPLOYMENT=greeter
run env

if [ "$cpi" = docker ]; then
  step "Build a docker stemcell (Debian + bosh-agent; the base is cached after the first run) and upload it"
  run create-stemcell docker --output "$work/stemcell.tgz" | tail -3
else
  step "Build a sim stemcell and upload it"
  run create-stemcell sim --output "$work/stemcell.tgz"
fi
run upload-stemcell "$work/stemcell.tgz"

step "Create the example release from its directory and upload it (C packages, ERB jobs)"
run upload-release "$work/greeter-release"

if [ "$cpi" = docker ]; then
  step "Describe the cloud once: two AZs on the director's Docker network (10.245.0.0/24)"
else
  step "Describe the cloud once: two AZs on one loopback manual network"
fi
run -n update-cloud-config "$manifests/cloud-config-$cpi.yml"

step "Deploy: compile packages on compilation VMs, render templates, canary first"
t0=$(date +%s)
run -n deploy "$manifests/greeter.yml"
elapsed "$t0"

step "Instances, with their processes"
run instances --ps

step "The proxy answers, round-robin over the servers it found through its link"
proxy_ip=$("$BOSH_RS" instances --json |
  python3 -c 'import json,sys
rows = json.load(sys.stdin)["Tables"][0]["Rows"]
print(next(r["ips"] for r in rows if r["instance"].startswith("proxy/")))')
for _ in 1 2 3; do
  printf '$ curl http://%s:8000/\n' "$proxy_ip"
  curl -sf --max-time 5 "http://$proxy_ip:8000/" | head -3
done

step "A second deploy of the same manifest changes nothing"
t0=$(date +%s)
run -n deploy "$manifests/greeter.yml"
elapsed "$t0"

step "Delete the deployment: VMs deleted, IPs released"
run -n delete-deployment

printf '\nDone. The director log is gone with its scratch dir; rerun with bash -x to see more.\n'
