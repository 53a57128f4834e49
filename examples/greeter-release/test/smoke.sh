#!/bin/bash
# Smoke test for the greeter release's C code, outside any VM.
#
#   examples/greeter-release/test/smoke.sh        (KEEP_TMP=1 keeps the work dir)
#
# 1. stages each package the way BOSH does (the files matched by its spec's
#    `files:` globs, plus `packaging`) and runs its packaging script with
#    BOSH_INSTALL_TARGET in a temp dir and -Werror added to the default flags;
#    greeter finds libgreet through BOSH_PACKAGES_DIR;
# 2. starts two greeterd servers and a greeter-proxy on 127.0.0.1 (free ports),
#    checks GET /, /health, /stats, HEAD, 404/405/400, the request counter,
#    the pidfile, the proxy's round robin and failover, greeter-probe's exit
#    codes and the greeter-smoke-test driver (passing and failing);
# 3. stops everything with SIGTERM and checks clean exits and removed pidfiles;
# 4. renders the greeter job (test/render.rb) and drives its real bin/ctl
#    start/stop in a fake /var/vcap under the work dir, then runs
#    test/templates.sh (renders and checks all job templates). 4 needs ruby.
#
# Every wait is bounded; the whole run is killed after 120 s. Exits non-zero
# with a message on the first failure.
set -euo pipefail

RELEASE_DIR=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/greeter-smoke.XXXXXX")
PIDS=()
WATCHDOG=""

cleanup() {
  local rc=$?
  local pid
  {
    for pid in "${PIDS[@]}"; do
      kill -KILL "${pid}" && wait "${pid}"
    done
  } 2>/dev/null || true
  [ -n "${WATCHDOG}" ] && kill "${WATCHDOG}" 2>/dev/null || true
  if [ "${KEEP_TMP:-0}" = 1 ]; then
    echo "work dir kept: ${WORK}"
  else
    rm -rf "${WORK}"
  fi
  exit "${rc}"
}
trap cleanup EXIT
trap 'echo "FAIL: interrupted (timeout?)" >&2; exit 124' TERM INT

(
  sleep 120 &
  sleeper=$!
  trap 'kill "${sleeper}" 2>/dev/null; exit 0' TERM
  wait "${sleeper}"
  echo "FAIL: smoke test took longer than 120 s" >&2
  kill -TERM $$
) 2>/dev/null &
WATCHDOG=$!

fail() {
  echo "FAIL: $*" >&2
  for log in "${WORK}"/*.log; do
    [ -f "${log}" ] || continue
    echo "--- ${log##*/}" >&2
    tail -n 20 "${log}" >&2
  done
  exit 1
}
pass() { echo "ok   $*"; }

# ------------------------------------------------------------------ build

# the `files:` globs of a package spec, one per line
spec_files() {
  awk '/^files:/ { in_files = 1; next }
       /^[^ -]/   { in_files = 0 }
       in_files && /^- / { sub(/^- /, ""); gsub(/["'\'']/, ""); print }' "$1"
}

stage_and_build() {
  local pkg=$1 stage="${WORK}/compile/$1" pattern f matched
  mkdir -p "${stage}"
  cp "${RELEASE_DIR}/packages/${pkg}/packaging" "${stage}/packaging"
  while IFS= read -r pattern; do
    matched=0
    # shellcheck disable=SC2086 # the pattern must glob
    for f in $(cd "${RELEASE_DIR}/src" && shopt -s globstar nullglob && echo ${pattern}); do
      mkdir -p "${stage}/$(dirname "${f}")"
      cp -p "${RELEASE_DIR}/src/${f}" "${stage}/${f}"
      matched=1
    done
    [ "${matched}" = 1 ] || fail "package ${pkg}: files pattern '${pattern}' matches nothing under src/"
  done < <(spec_files "${RELEASE_DIR}/packages/${pkg}/spec")

  [ -x "${RELEASE_DIR}/packages/${pkg}/packaging" ] || fail "packages/${pkg}/packaging is not executable"
  if ! (cd "${stage}" &&
        BOSH_INSTALL_TARGET="${WORK}/packages/${pkg}" \
        BOSH_COMPILE_TARGET="${stage}" \
        BOSH_PACKAGE_NAME="${pkg}" \
        BOSH_PACKAGE_VERSION=smoke \
        BOSH_PACKAGES_DIR="${WORK}/packages" \
        CFLAGS="-O2 -Wall -Wextra -std=c99 -Werror" \
        timeout 120 bash -e ./packaging) >"${WORK}/packaging-${pkg}.log" 2>&1; then
    fail "packaging ${pkg} failed: $(cat "${WORK}/packaging-${pkg}.log")"
  fi
  pass "package ${pkg} compiled"
}

stage_and_build libgreet
[ -f "${WORK}/packages/libgreet/lib/libgreet.a" ] || fail "libgreet.a not installed"
[ -f "${WORK}/packages/libgreet/include/greet.h" ] || fail "greet.h not installed"
stage_and_build greeter
BIN="${WORK}/packages/greeter/bin"
for prog in greeterd greeter-proxy greeter-probe greeter-smoke-test; do
  [ -x "${BIN}/${prog}" ] || fail "${prog} not installed in ${BIN}"
done

# ------------------------------------------------------------------ helpers

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# http METHOD PATH PORT [RAW_HEADER_LINES] -> raw response on stdout
http() {
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$2" || exit 2
    printf "%s %s HTTP/1.0\r\nHost: smoke\r\n%b\r\n" "$0" "$1" "$3" >&3
    cat <&3' "$1" "$2" "$3" "${4:-}"
}
# raw bytes -> http + body
status_of() { head -n 1 <<<"$1" | tr -d '\r'; }
body_of() { awk 'body { print } /^\r?$/ { body = 1 }' <<<"$1"; }
expect_contains() { # what haystack needle
  grep -qF -- "$3" <<<"$2" || fail "$1: expected to find '$3' in:"$'\n'"$2"
}

# start_daemon NAME BINARY CONFIG PORT_VAR_NAME: writes the config through
# write_config_<NAME> with a free port, retrying if the port gets taken.
start_daemon() {
  local name=$1 binary=$2 attempt port pid
  for attempt in 1 2 3 4 5; do
    port=$(( (RANDOM << 1 ^ RANDOM ^ $$) % 30000 + 20000 ))
    port_in_use "${port}" && continue
    "write_config_${name}" "${port}" >"${WORK}/${name}.conf"
    "${binary}" "${WORK}/${name}.conf" 2>>"${WORK}/${name}.log" &
    pid=$!
    PIDS+=("${pid}")
    for _ in $(seq 1 50); do
      if ! kill -0 "${pid}" 2>/dev/null; then
        break # exited: port taken or bad config
      fi
      if [ -s "${WORK}/${name}.pid" ] && port_in_use "${port}"; then
        printf -v "PORT_${name//-/_}" '%s' "${port}"
        printf -v "PID_${name//-/_}" '%s' "${pid}"
        pass "${name} started (pid ${pid}, port ${port}, attempt ${attempt})"
        return 0
      fi
      sleep 0.1
    done
    kill -KILL "${pid}" 2>/dev/null || true
  done
  fail "${name} did not start"
}

# stop_daemon NAME: SIGTERM, exit 0 within 5 s, pidfile removed
stop_daemon() {
  local name=$1 pidvar="PID_${1//-/_}" pid rc=0
  pid=${!pidvar}
  kill -TERM "${pid}" || fail "${name}: cannot signal pid ${pid}"
  for _ in $(seq 1 50); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "${pid}" 2>/dev/null && fail "${name} still running 5 s after SIGTERM"
  wait "${pid}" || rc=$?
  [ "${rc}" = 0 ] || fail "${name} exited with status ${rc} after SIGTERM"
  [ ! -e "${WORK}/${name}.pid" ] || fail "${name} left its pidfile behind"
  grep -q "stop requested" "${WORK}/${name}.log" || fail "${name} did not log its shutdown"
  pass "${name} stopped cleanly on SIGTERM (exit 0, pidfile removed)"
}

# ------------------------------------------------------------------ servers

write_config_server1() {
  cat <<EOF
# written by smoke.sh
listen_address = 127.0.0.1
port = $1
pidfile = ${WORK}/server1.pid
request_timeout_ms = 2000
deployment = smoke
instance_group = greeter
index = 2
az = z9
id = 6f1c2d3e-smoke-0002
address = 127.0.0.1
bootstrap = true
greeting = Hello from the smoke test!
motd = Have a nice day.
stats_token = s3cret
peers = 10.245.0.11:8080,10.245.0.12:8080
EOF
}
write_config_server2() {
  cat <<EOF
listen_address = 127.0.0.1
port = $1
pidfile = ${WORK}/server2.pid
index = 3
id = 6f1c2d3e-smoke-0003
request_timeout_ms = 1000
greeting = Hello from the smoke test!
peers =
EOF
}

start_daemon server1 "${BIN}/greeterd"
start_daemon server2 "${BIN}/greeterd"
[ "$(cat "${WORK}/server1.pid")" = "${PID_server1}" ] || fail "pidfile holds $(cat "${WORK}/server1.pid"), expected ${PID_server1}"
pass "pidfile holds the server's pid"

r=$(http GET / "${PORT_server1}") || fail "GET / failed"
[ "$(status_of "$r")" = "HTTP/1.0 200 OK" ] || fail "GET /: unexpected status line: $(status_of "$r")"
b=$(body_of "$r")
[ "$(head -n 1 <<<"$b")" = "Hello from the smoke test!" ] || fail "GET /: first line is not the greeting:"$'\n'"$b"
expect_contains "GET /" "$b" "greeter/6f1c2d3e-smoke-0002 (index 2, bootstrap)"
expect_contains "GET /" "$b" "deployment  smoke"
expect_contains "GET /" "$b" "az          z9"
expect_contains "GET /" "$b" "address     127.0.0.1:${PORT_server1}"
expect_contains "GET /" "$b" "requests    1"
expect_contains "GET /" "$b" "peers       2"
expect_contains "GET /" "$b" "- 10.245.0.12:8080"
expect_contains "GET /" "$b" "Have a nice day."
expect_contains "GET / headers" "$r" "Content-Type: text/plain"
pass "GET / shows greeting, identity, AZ, counter, peers, motd"

r=$(http GET /health "${PORT_server1}") || fail "GET /health failed"
[ "$(status_of "$r")" = "HTTP/1.0 200 OK" ] || fail "GET /health: $(status_of "$r")"
[ "$(body_of "$r")" = "ok" ] || fail "GET /health: body is '$(body_of "$r")', expected 'ok'"
pass "GET /health answers ok"

r=$(http GET / "${PORT_server1}")
expect_contains "second GET /" "$(body_of "$r")" "requests    3"
pass "request counter counts every request"

if command -v curl >/dev/null; then
  b=$(curl -sS --max-time 5 "http://127.0.0.1:${PORT_server1}/") || fail "curl GET / failed"
  expect_contains "curl GET /" "$b" "Hello from the smoke test!"
  pass "curl GET / works"
fi

r=$(http HEAD / "${PORT_server1}")
[ "$(status_of "$r")" = "HTTP/1.0 200 OK" ] || fail "HEAD /: $(status_of "$r")"
[ -z "$(body_of "$r")" ] || fail "HEAD / returned a body"
expect_contains "HEAD /" "$r" "Content-Length:"
pass "HEAD / has headers and no body"

[ "$(status_of "$(http GET /nope "${PORT_server1}")")" = "HTTP/1.0 404 Not Found" ] || fail "GET /nope is not a 404"
r=$(http POST / "${PORT_server1}")
[ "$(status_of "$r")" = "HTTP/1.0 405 Method Not Allowed" ] || fail "POST / is not a 405"
expect_contains "POST /" "$r" "Allow: GET, HEAD"
r=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"; printf "garbage\r\n\r\n" >&3; cat <&3' "${PORT_server1}")
[ "$(status_of "$r")" = "HTTP/1.0 400 Bad Request" ] || fail "garbage request is not a 400: $(status_of "$r")"
r=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"; printf "GET / HTTP/2.0\r\n\r\n" >&3; cat <&3' "${PORT_server1}")
[ "$(status_of "$r")" = "HTTP/1.0 505 HTTP Version Not Supported" ] || fail "HTTP/2.0 request is not a 505: $(status_of "$r")"
pass "404 / 405 / 400 / 505 answers"

[ "$(status_of "$(http GET /stats "${PORT_server1}")")" = "HTTP/1.0 401 Unauthorized" ] || fail "/stats without token is not a 401"
[ "$(status_of "$(http GET /stats "${PORT_server1}" 'Authorization: Bearer wrong\r\n')")" = "HTTP/1.0 401 Unauthorized" ] || fail "/stats with a wrong token is not a 401"
r=$(http GET /stats "${PORT_server1}" 'Authorization: Bearer s3cret\r\n')
[ "$(status_of "$r")" = "HTTP/1.0 200 OK" ] || fail "/stats with the token: $(status_of "$r")"
expect_contains "/stats" "$(body_of "$r")" "index=2"
expect_contains "/stats" "$(body_of "$r")" "errors=2" # the garbage and HTTP/2.0 requests
grep -q '^requests=[0-9]' <<<"$(body_of "$r")" || fail "/stats has no requests= line"
r=$(http GET /stats "${PORT_server2}")
[ "$(status_of "$r")" = "HTTP/1.0 200 OK" ] || fail "/stats without a configured token should be open"
pass "/stats: token enforced when configured, open otherwise"

# a client that connects and says nothing must not block the server forever
(exec 3<>"/dev/tcp/127.0.0.1/${PORT_server2}"; sleep 3) 2>/dev/null &
idle=$!
sleep 0.2
r=$(http GET /health "${PORT_server2}") || fail "server2 blocked by an idle client"
wait "${idle}" 2>/dev/null || true
[ "$(body_of "$r")" = "ok" ] || fail "server2 /health after idle client: $(body_of "$r")"
pass "an idle client is timed out (request_timeout_ms)"

# ------------------------------------------------------------------ probe

out=$("${BIN}/greeter-probe" -t 2000 127.0.0.1 "${PORT_server1}" /health) || fail "greeter-probe /health failed"
[ "${out}" = "ok" ] || fail "greeter-probe printed '${out}'"
rc=0; "${BIN}/greeter-probe" -t 2000 127.0.0.1 "${PORT_server1}" /nope >/dev/null 2>&1 || rc=$?
[ "${rc}" = 1 ] || fail "greeter-probe on a 404 exited ${rc}, expected 1"
dead_port=1
for p in 29999 39999 49999 59999; do port_in_use "$p" || { dead_port=$p; break; }; done
rc=0; "${BIN}/greeter-probe" -t 2000 127.0.0.1 "${dead_port}" / >/dev/null 2>&1 || rc=$?
[ "${rc}" = 2 ] || fail "greeter-probe on a closed port exited ${rc}, expected 2"
out=$("${BIN}/greeter-probe" -a s3cret 127.0.0.1 "${PORT_server1}" /stats) || fail "greeter-probe -a failed"
expect_contains "greeter-probe -a" "${out}" "index=2"
pass "greeter-probe exit codes 0 / 1 / 2 and -a"

# ------------------------------------------------------------------ proxy

write_config_proxy() {
  cat <<EOF
listen_address = 127.0.0.1
port = $1
pidfile = ${WORK}/proxy.pid
connect_timeout_ms = 500
request_timeout_ms = 2000
backends = 127.0.0.1:${PORT_server1},127.0.0.1:${dead_port},127.0.0.1:${PORT_server2}
EOF
}
start_daemon proxy "${BIN}/greeter-proxy"
seen=""
for _ in 1 2 3 4; do
  r=$(http GET / "${PORT_proxy}") || fail "GET / through the proxy failed"
  [ "$(status_of "$r")" = "HTTP/1.0 200 OK" ] || fail "proxy GET /: $(status_of "$r")"$'\n'"$r"
  seen="${seen}$(tr -d '\r' <<<"$r" | sed -n 's/^X-Greeter-Backend: //p')"$'\n'
done
distinct=$(sed '/^$/d' <<<"${seen}" | sort -u)
[ "$(wc -l <<<"${distinct}")" = 2 ] || fail "proxy did not spread requests over both live servers: ${distinct}"
grep -q ":${dead_port}\$" <<<"${distinct}" && fail "proxy answered from the dead backend"
r=$(http GET /proxy/status "${PORT_proxy}")
expect_contains "/proxy/status" "$(body_of "$r")" "127.0.0.1:${dead_port}  down"
expect_contains "/proxy/status" "$(body_of "$r")" "127.0.0.1:${PORT_server1}  up"
pass "proxy round-robins over live servers and skips the dead one"

# ------------------------------------------------------------------ smoke-test driver

s1="greeter/6f1c2d3e-smoke-0002 (index 2, az z9)|127.0.0.1|${PORT_server1}"
s2="greeter/6f1c2d3e-smoke-0003 (index 3, az -)|127.0.0.1|${PORT_server2}"
healthy=$("${BIN}/greeter-smoke-test" -t 2000 -g "Hello from the smoke test!" -P "proxy/0|127.0.0.1|${PORT_proxy}" "$s1" "$s2" 2>&1) ||
  fail "greeter-smoke-test failed on healthy servers:"$'\n'"${healthy}"
expect_contains "greeter-smoke-test" "${healthy}" "RESULT: OK (3 passed)"
expect_contains "greeter-smoke-test" "${healthy}" "answered, by 2 distinct server(s)"
rc=0
out=$("${BIN}/greeter-smoke-test" -t 1000 -g "Hello from the smoke test!" "$s1" "dead/0|127.0.0.1|${dead_port}" 2>&1) || rc=$?
[ "${rc}" = 1 ] || fail "greeter-smoke-test exited ${rc} with a dead server, expected 1:"$'\n'"${out}"
expect_contains "greeter-smoke-test (dead)" "${out}" "FAIL  dead/0"
expect_contains "greeter-smoke-test (dead)" "${out}" "RESULT: FAILED (1 passed, 1 failed)"
rc=0
out=$("${BIN}/greeter-smoke-test" -t 1000 -g "Bonjour" "$s1" 2>&1) || rc=$?
[ "${rc}" = 1 ] || fail "greeter-smoke-test accepted a wrong greeting"
pass "greeter-smoke-test passes on healthy servers, fails on a dead one or a wrong greeting"
sed 's/^/     | /' <<<"${healthy}"
echo "     GET / answer:"
body_of "$(http GET / "${PORT_server1}")" | sed 's/^/     | /'

# ------------------------------------------------------------------ shutdown

stop_daemon proxy
stop_daemon server2
stop_daemon server1
PIDS=()

# ------------------------------------------------------------------ the job's ctl script

# Render the greeter job with test/render.rb, move /var/vcap into the work dir,
# and drive the real bin/ctl start/stop the way monit would.
if command -v ruby >/dev/null; then
  VC="${WORK}/vcap"
  mkdir -p "${VC}/packages/greeter"
  cp -r "${BIN}" "${VC}/packages/greeter/bin"
  port=0
  for _ in 1 2 3 4 5; do
    port=$(( (RANDOM << 1 ^ RANDOM) % 30000 + 20000 ))
    port_in_use "${port}" || break
  done
  cat >"${WORK}/ctl-context.json" <<EOF
{"spec": {"name": "greeter", "index": 4, "id": "ctl-test-uuid", "az": "z2", "address": "127.0.0.1",
          "deployment": "smoke", "bootstrap": false},
 "properties": {"port": ${port}, "listen_address": "127.0.0.1", "greeting": "Hello via bin/ctl",
                "shutdown_timeout_seconds": 5},
 "links": {"peers": {"instances": [{"name": "greeter", "id": "ctl-test-uuid", "index": 4, "address": "127.0.0.1"},
                                   {"name": "greeter", "id": "other", "index": 5, "address": "10.1.2.3"}],
                     "properties": {"port": ${port}, "greeting": "Hello via bin/ctl"}}}}
EOF
  timeout 30 ruby "${RELEASE_DIR}/test/render.rb" "${RELEASE_DIR}/jobs/greeter" "${WORK}/ctl-context.json" \
    "${VC}/jobs/greeter" || fail "rendering the greeter job failed"
  ctl="${VC}/jobs/greeter/bin/ctl"
  sed -i "s|/var/vcap|${VC}|g" "${ctl}" "${VC}/jobs/greeter/config/greeter.conf" "${VC}/jobs/greeter/monit"
  chmod +x "${ctl}"
  grep -q "with pidfile ${VC}/sys/run/greeter/greeter.pid" "${VC}/jobs/greeter/monit" ||
    fail "monit pidfile is not where ctl writes it"

  "${ctl}" start &
  ctl_pid=$!
  PIDS+=("${ctl_pid}")
  for _ in $(seq 1 50); do
    port_in_use "${port}" && break
    kill -0 "${ctl_pid}" 2>/dev/null || fail "ctl start: the server exited: $(cat "${VC}"/sys/log/greeter/*.log)"
    sleep 0.1
  done
  port_in_use "${port}" || fail "ctl start: nothing listens on ${port}"
  [ "$(cat "${VC}/sys/run/greeter/greeter.pid")" = "${ctl_pid}" ] || fail "ctl start: pidfile does not hold the server's pid"
  b=$(body_of "$(http GET / "${port}")")
  expect_contains "GET / (ctl)" "$b" "Hello via bin/ctl"
  expect_contains "GET / (ctl)" "$b" "greeter/ctl-test-uuid (index 4)"
  expect_contains "GET / (ctl)" "$b" "- 10.1.2.3:${port}"
  grep -qF -- "- 127.0.0.1:${port}" <<<"$b" && fail "the server lists itself as a peer"
  "${ctl}" start || fail "a second ctl start failed"
  grep -q "already running" "${VC}/sys/log/greeter/ctl.stdout.log" || fail "a second ctl start did not notice the running server"
  timeout 20 "${ctl}" stop || fail "ctl stop failed"
  kill -0 "${ctl_pid}" 2>/dev/null && fail "ctl stop returned but the server still runs"
  rc=0; wait "${ctl_pid}" || rc=$?
  [ "${rc}" = 0 ] || fail "server started by ctl exited ${rc}"
  [ ! -e "${VC}/sys/run/greeter/greeter.pid" ] || fail "ctl stop left the pidfile"
  grep -q "stop requested" "${VC}/sys/log/greeter/greeter.stderr.log" || fail "server log (under sys/log/greeter) lacks the shutdown line"
  "${ctl}" stop || fail "ctl stop of a stopped job failed"
  PIDS=()
  pass "rendered bin/ctl starts (pidfile, logs under sys/log), refuses a double start, stops cleanly"
else
  echo "skip bin/ctl test: ruby is not installed"
fi

# the job templates (rendered with test/render.rb; skipped without ruby)
"${RELEASE_DIR}/test/templates.sh" || fail "template checks failed"
echo "PASS: greeter release smoke test"
