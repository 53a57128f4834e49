# Request timing helpers for the director benchmarks (sourced after director.sh, not run).

# time_endpoint PATH COUNT WORKDIR : requests PATH COUNT times after 10 warm-up requests, one
# at a time over one kept-alive TLS connection (curl with many URLs in one process, so TLS
# handshakes are not timed); prints "ms bytes" per timed request. Fails on a non-200.
time_endpoint() {
  local path=$1 count=$2 cfg="$3/curl.cfg" i
  : >"${cfg}"
  for i in $(seq 1 $((count + 10))); do
    printf 'url = "%s%s"\noutput = "/dev/null"\n' "${DIRECTOR_URL}" "${path}" >>"${cfg}"
  done
  dcurl --fail -w '%{http_code} %{time_total} %{size_download}\n' --config "${cfg}" |
    tail -n +11 | awk -v p="${path}" '$1 != 200 { print "HTTP " $1 " for " p > "/dev/stderr"; exit 1 }
      { printf "%.3f %d\n", $2 * 1000, $3 }'
}

# percentile P VALUES... : nearest-rank percentile, one decimal
percentile() {
  local p=$1
  shift
  printf '%s\n' "$@" | sort -g | awk -v p="${p}" '{ v[NR] = $1 } END {
    r = int((p / 100) * NR + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR; printf "%.1f", v[r] }'
}

# bytes_human N : 1234567 -> "1.2 MiB"
bytes_human() {
  awk -v b="$1" 'BEGIN { split("B KiB MiB GiB", u, " "); i = 1
    while (b >= 1024 && i < 4) { b /= 1024; i++ } printf (i == 1 ? "%d %s" : "%.1f %s"), b, u[i] }'
}

# endpoint_stats PATH COUNT WORKDIR : time_endpoint, summed up as "p50 p99 max bytes" (ms, and
# the last response's size). Fails, with the director's last log lines, when fewer than COUNT
# requests succeeded.
endpoint_stats() {
  local lines l ms=()
  lines=$(time_endpoint "$1" "$2" "$3") || true
  while read -r l; do [ -n "${l}" ] && ms+=("${l%% *}"); done <<<"${lines}"
  if [ "${#ms[@]}" -ne "$2" ]; then
    kill -0 "${DIRECTOR_PID}" 2>/dev/null || echo "the director (pid ${DIRECTOR_PID}) is gone" >&2
    sed 's/\x1b\[[0-9;]*m//g' "${DATA:-/dev/null}/director.err" 2>/dev/null | tail -n 20 >&2
    echo "GET $1: expected $2 timings, got ${#ms[@]}" >&2
    return 1
  fi
  echo "$(percentile 50 "${ms[@]}") $(percentile 99 "${ms[@]}") $(max_of "${ms[@]}") ${lines##* }"
}
