# Helpers for the director benchmarks (sourced, not run): start a bosh-director on a free
# port in a data dir, find its URL and admin password, call it with curl, wait for tasks.
#
# After director_start DIR [ARGS...]: DIRECTOR_PID, DIRECTOR_URL, DIRECTOR_PASSWORD and
# DIRECTOR_CA are set. director_stop ends that process only.

director_start() {
  local dir=$1 deadline line
  shift
  mkdir -p "${dir}"
  # A restart in the same dir must not read the previous run's address before the new
  # process truncates the file.
  rm -f "${dir}/director.out"
  "${BOSH_DIRECTOR}" --data-dir "${dir}" --listen 127.0.0.1:0 --cpi sim "$@" \
    >"${dir}/director.out" 2>"${dir}/director.err" &
  DIRECTOR_PID=$!
  deadline=$((SECONDS + 120))
  until line=$(grep -m 1 '^Director listening on ' "${dir}/director.out" 2>/dev/null); do
    if ! kill -0 "${DIRECTOR_PID}" 2>/dev/null; then
      echo "bosh-director exited during start-up:" >&2
      tail -n 20 "${dir}/director.err" >&2
      return 1
    fi
    [ "${SECONDS}" -lt "${deadline}" ] || { echo "bosh-director did not start in 120 s" >&2; return 1; }
    sleep 0.1
  done
  DIRECTOR_URL=${line#Director listening on }
  DIRECTOR_CA="${dir}/ca.crt"
  DIRECTOR_PASSWORD=$(awk '/^password:/ { print $2 }' "${dir}/credentials.yml")
}

director_stop() {
  [ -n "${DIRECTOR_PID:-}" ] || return 0
  kill "${DIRECTOR_PID}" 2>/dev/null || true
  wait "${DIRECTOR_PID}" 2>/dev/null || true
  DIRECTOR_PID=
}

# dcurl ARGS... : curl against the director with its CA and the admin user
dcurl() {
  curl -sS --cacert "${DIRECTOR_CA}" -u "admin:${DIRECTOR_PASSWORD}" "$@"
}

# task_wait ID : polls /tasks/ID until it ends (deadline 30 min); prints its final JSON
task_wait() {
  local id=$1 deadline=$((SECONDS + 1800)) json state
  while :; do
    json=$(dcurl "${DIRECTOR_URL}/tasks/${id}")
    state=$(printf '%s' "${json}" | sed -n 's/.*"state":"\([a-z]*\)".*/\1/p')
    case "${state}" in done | error | cancelled | timeout)
      printf '%s\n' "${json}"
      return 0
      ;;
    esac
    [ "${SECONDS}" -lt "${deadline}" ] || { echo "task ${id} still ${state} after 30 min" >&2; return 1; }
    sleep 0.2
  done
}

# proc_kib PID FIELD : a /proc/PID/status field (VmHWM, VmRSS) in KiB
proc_kib() {
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# director_scratch NAME : WORK = a new scratch dir named after NAME, DATA = WORK/data; on exit
# the director is stopped and WORK removed (BENCH_KEEP=1 keeps it and prints its path).
director_scratch() {
  WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/bench-$1.XXXXXX")
  DATA="${WORK}/data"
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    trap 'director_stop; echo "kept ${WORK}" >&2' EXIT
  else
    trap 'director_stop; rm -rf "${WORK}"' EXIT
  fi
}
