#!/bin/bash
# greeter-smoke-test: checks that every greeter server (and optionally every
# greeter-proxy) answers, prints a summary, and exits 1 if anything is down.
#
#   greeter-smoke-test [-t TIMEOUT_MS] [-g GREETING] [-P 'LABEL|HOST|PORT']... 'LABEL|HOST|PORT'...
#
#   -t  per-request timeout in milliseconds (default 3000)
#   -g  expected first line of every server's "GET /" answer (not checked when empty)
#   -P  a proxy to check: 2 requests per server must all be answered with 200
#
# Per server: "GET /health" must answer 200 "ok", then "GET /" must answer 200
# (and start with GREETING when -g is given).
set -u

PROBE=${GREETER_PROBE:-$(cd "$(dirname "$0")" && pwd)/greeter-probe}
TIMEOUT_MS=3000
GREETING=""
PROXIES=()

usage() {
  echo "usage: $0 [-t TIMEOUT_MS] [-g GREETING] [-P 'LABEL|HOST|PORT']... 'LABEL|HOST|PORT'..." >&2
  exit 64
}

while getopts "t:g:P:h" opt; do
  case "${opt}" in
    t) TIMEOUT_MS=${OPTARG} ;;
    g) GREETING=${OPTARG} ;;
    P) PROXIES+=("${OPTARG}") ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
SERVERS=("$@")

if [ ! -x "${PROBE}" ]; then
  echo "greeter-smoke-test: probe ${PROBE} not found" >&2
  exit 2
fi

passed=0
failed=0
report=()

# split 'LABEL|HOST|PORT' into label host port
split_entry() {
  local entry=$1
  port=${entry##*|}
  entry=${entry%|*}
  host=${entry##*|}
  label=${entry%|*}
}

echo "greeter smoke tests: ${#SERVERS[@]} server(s), ${#PROXIES[@]} proxy(ies), timeout ${TIMEOUT_MS} ms"
if [ "${#SERVERS[@]}" -eq 0 ]; then
  echo "FAIL: no greeter servers to test (is the 'greeter' link empty?)"
  exit 1
fi

for entry in "${SERVERS[@]}"; do
  split_entry "${entry}"
  problem=""
  if ! health=$("${PROBE}" -t "${TIMEOUT_MS}" "${host}" "${port}" /health 2>&1); then
    problem="/health: ${health//$'\n'/ }"
  elif [ "${health}" != "ok" ]; then
    problem="/health answered '${health//$'\n'/ }' instead of 'ok'"
  elif ! body=$("${PROBE}" -t "${TIMEOUT_MS}" "${host}" "${port}" / 2>&1); then
    problem="/: ${body//$'\n'/ }"
  elif [ -n "${GREETING}" ] && [ "$(printf '%s\n' "${body}" | head -n 1)" != "${GREETING}" ]; then
    problem="/ greets with '$(printf '%s\n' "${body}" | head -n 1)', expected '${GREETING}'"
  fi
  if [ -z "${problem}" ]; then
    requests=$(printf '%s\n' "${body}" | sed -n 's/^ *requests *//p')
    report+=("  PASS  ${label}  ${host}:${port}  (requests served: ${requests:-?})")
    passed=$((passed + 1))
  else
    report+=("  FAIL  ${label}  ${host}:${port}  ${problem}")
    failed=$((failed + 1))
  fi
done

for entry in "${PROXIES[@]}"; do
  split_entry "${entry}"
  want=$((2 * ${#SERVERS[@]}))
  ok=0
  backends=""
  last_error=""
  for _ in $(seq 1 "${want}"); do
    if out=$("${PROBE}" -i -t "${TIMEOUT_MS}" "${host}" "${port}" / 2>&1); then
      ok=$((ok + 1))
      backend=$(printf '%s\n' "${out}" | tr -d '\r' | sed -n 's/^X-Greeter-Backend: //p')
      backends="${backends}${backend}"$'\n'
    else
      last_error=${out//$'\n'/ }
    fi
  done
  distinct=$(printf '%s' "${backends}" | sed '/^$/d' | sort -u | wc -l)
  if [ "${ok}" -eq "${want}" ]; then
    report+=("  PASS  ${label}  ${host}:${port}  ${ok}/${want} answered, by ${distinct} distinct server(s)")
    passed=$((passed + 1))
  else
    report+=("  FAIL  ${label}  ${host}:${port}  ${ok}/${want} answered; last error: ${last_error}")
    failed=$((failed + 1))
  fi
done

printf '%s\n' "${report[@]}"
if [ "${failed}" -gt 0 ]; then
  echo "RESULT: FAILED (${passed} passed, ${failed} failed)"
  exit 1
fi
echo "RESULT: OK (${passed} passed)"
