#!/bin/bash
# Renders every job template of the greeter release with test/render.rb (a
# small stand-in for the director's renderer: p, if_p, spec, link, if_link)
# and checks the results: scripts are valid bash, configs carry the
# properties, identity, links and defaults they should.
#
#   examples/greeter-release/test/templates.sh      (needs ruby; KEEP_TMP=1 keeps the output)
set -euo pipefail

RELEASE_DIR=$(cd "$(dirname "$0")/.." && pwd)
RENDER="${RELEASE_DIR}/test/render.rb"
command -v ruby >/dev/null || { echo "SKIP: ruby is not installed" >&2; exit 0; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/greeter-templates.XXXXXX")
trap '[ "${KEEP_TMP:-0}" = 1 ] && echo "kept ${WORK}" || rm -rf "${WORK}"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok   $*"; }
render() { # JOB NAME CONTEXT_JSON
  printf '%s' "$3" >"${WORK}/$2.json"
  timeout 30 ruby "${RENDER}" "${RELEASE_DIR}/jobs/$1" "${WORK}/$2.json" "${WORK}/$2" ||
    fail "rendering job $1 ($2) failed"
}
has() { grep -qxF -- "$2" "$1" || fail "$1: no line '$2' in:"$'\n'"$(cat "$1")"; }
hasnt() { ! grep -qF -- "$2" "$1" || fail "$1: unexpected '$2'"; }
valid_bash() { bash -n "$1" || fail "$1 is not valid bash"; }

SERVERS='[
  {"name": "greeter", "id": "aaaa-0", "index": 0, "az": "z1", "address": "10.245.0.10", "bootstrap": true},
  {"name": "greeter", "id": "bbbb-1", "index": 1, "az": "z2", "address": "10.245.0.11", "bootstrap": false},
  {"name": "greeter", "id": "cccc-2", "index": 2, "az": "z1", "address": "10.245.0.12", "bootstrap": false}]'

# --- greeter: manifest properties, peers link, if_p branches taken
render greeter server '{
  "spec": {"name": "greeter", "index": 1, "id": "bbbb-1", "az": "z2", "address": "10.245.0.11",
           "deployment": "greeter", "bootstrap": false},
  "properties": {"greeting": "Hi\nthere", "motd": "deployed by CI", "stats_token": "t0k3n", "port": 9090},
  "links": {"peers": {"instances": '"${SERVERS}"', "properties": {"port": 9090, "greeting": "Hi"}}}}'
c="${WORK}/server/config/greeter.conf"
has "$c" "port = 9090"
has "$c" "listen_address = 0.0.0.0"
has "$c" "index = 1"
has "$c" "az = z2"
has "$c" "id = bbbb-1"
has "$c" "address = 10.245.0.11"
has "$c" "deployment = greeter"
has "$c" "greeting = Hi there"
has "$c" "motd = deployed by CI"
has "$c" "stats_token = t0k3n"
has "$c" "peers = 10.245.0.10:9090,10.245.0.12:9090"
has "$c" "request_timeout_ms = 5000"
valid_bash "${WORK}/server/bin/ctl"
has "${WORK}/server/bin/ctl" "SHUTDOWN_TIMEOUT=10"
has "${WORK}/server/monit" "  with pidfile /var/vcap/sys/run/greeter/greeter.pid"
grep -q '^PIDFILE=${RUN_DIR}/${JOB}.pid$' "${WORK}/server/bin/ctl" || fail "ctl pidfile differs from monit's"
pass "greeter: properties, spec.*, if_p, peers through if_link"

# --- greeter: defaults only, no peers link, no az
render greeter lone '{
  "spec": {"name": "greeter", "index": 0, "id": "aaaa-0", "az": null, "address": "10.245.0.10",
           "deployment": "greeter", "bootstrap": true},
  "properties": {}, "links": {}}'
c="${WORK}/lone/config/greeter.conf"
has "$c" "port = 8080"
has "$c" "greeting = Hello from greeter!"
has "$c" "az = "
has "$c" "peers = "
hasnt "$c" "motd"
hasnt "$c" "stats_token"
pass "greeter: defaults, no optional link, nil az"

# --- greeter-proxy: backends link
render greeter-proxy proxy '{
  "spec": {"name": "proxy", "index": 0, "id": "pppp-0", "az": "z1", "address": "10.245.0.20",
           "deployment": "greeter", "bootstrap": true},
  "properties": {"port": 80},
  "links": {"backends": {"instances": '"${SERVERS}"', "properties": {"port": 8080, "greeting": "Hi"}}}}'
c="${WORK}/proxy/config/greeter-proxy.conf"
has "$c" "port = 80"
has "$c" "connect_timeout_ms = 1000"
has "$c" "backends = 10.245.0.10:8080,10.245.0.11:8080,10.245.0.12:8080"
valid_bash "${WORK}/proxy/bin/ctl"
has "${WORK}/proxy/monit" "check process greeter-proxy"
pass "greeter-proxy: backends from link('backends').instances and .p('port')"

# --- greeter-smoke-tests: both links, a greeting that needs quoting
render greeter-smoke-tests errand '{
  "spec": {"name": "smoke-tests", "index": 0, "id": "ssss-0", "az": "z1", "address": "10.245.0.30",
           "deployment": "greeter", "bootstrap": true},
  "properties": {},
  "links": {"greeter": {"instances": '"${SERVERS}"', "properties": {"port": 8080, "greeting": "It'"'"'s $HOME `x`"}},
            "greeter-proxy": {"instances": [{"name": "proxy", "id": "pppp-0", "index": 0, "az": "z1", "address": "10.245.0.20"}],
                              "properties": {"port": 8000}}}}'
r="${WORK}/errand/bin/run"
valid_bash "$r"
[ ! -s "${WORK}/errand/monit" ] || fail "errand monit should be empty"
has "$r" "args=(-t 3000)"
has "$r" "args+=(-P 'proxy/pppp-0|10.245.0.20|8000')"
has "$r" "  'greeter/cccc-2 (index 2, az z1)|10.245.0.12|8080'"
# the greeting survives bash quoting untouched
got=$(bash -c "args=(); $(grep '^args+=(-g ' "$r"); printf '%s' \"\${args[1]}\"")
[ "${got}" = 'It'"'"'s $HOME `x`' ] || fail "greeting quoted wrongly: ${got}"
render greeter-smoke-tests errand-plain '{
  "spec": {"name": "smoke-tests", "index": 0, "id": "ssss-0", "az": "z1", "address": "10.245.0.30",
           "deployment": "greeter", "bootstrap": true},
  "properties": {"check_greeting": false, "timeout_ms": 500},
  "links": {"greeter": {"instances": '"${SERVERS}"', "properties": {"port": 8080, "greeting": "Hi"}}}}'
r="${WORK}/errand-plain/bin/run"
valid_bash "$r"
has "$r" "args=(-t 500)"
hasnt "$r" "-g "
hasnt "$r" "-P "
pass "greeter-smoke-tests: servers and optional proxy from links, safe quoting"

# a consumed link that is not optional must be required
printf '{"spec": {"name": "p", "index": 0, "id": "x", "deployment": "d"}, "properties": {}, "links": {}}' >"${WORK}/nolink.json"
if ruby "${RENDER}" "${RELEASE_DIR}/jobs/greeter-proxy" "${WORK}/nolink.json" "${WORK}/nolink" 2>"${WORK}/nolink.err"; then
  fail "greeter-proxy rendered without its backends link"
fi
grep -q "Can't find link 'backends'" "${WORK}/nolink.err" || fail "unexpected error: $(cat "${WORK}/nolink.err")"
pass "greeter-proxy refuses to render without its backends link"

echo "PASS: greeter release templates"
