# Helpers shared by the bench/*.sh scripts (sourced, not run).

# One-line description of this machine: cores, CPU model, memory, kernel.
machine_summary() {
  local cpu mem
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
  [ -n "${cpu}" ] || cpu=$(uname -m)
  mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
  printf '%s cores (nproc), %s, %s RAM, Linux %s' \
    "$(nproc 2>/dev/null || echo '?')" "${cpu}" "${mem:-? GiB}" "$(uname -r)"
}

# Monotonic-enough wall clock in seconds with nanoseconds.
now_s() { date +%s.%N; }

# median of numbers given as arguments (mean of the two middle ones for an even count)
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) exit 1
          if (NR % 2) printf "%.3f", v[(NR + 1) / 2]
          else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
min_of() { printf '%s\n' "$@" | sort -g | head -n 1 | xargs printf '%.3f'; }
max_of() { printf '%s\n' "$@" | sort -g | tail -n 1 | xargs printf '%.3f'; }

# human-readable size of a file
human_size() {
  local bytes
  bytes=$(stat -c %s "$1" 2>/dev/null || wc -c <"$1")
  awk -v b="${bytes}" 'BEGIN {
    split("B KiB MiB GiB", u, " "); i = 1
    while (b >= 1024 && i < 4) { b /= 1024; i++ }
    printf (i == 1 ? "%d %s" : "%.1f %s"), b, u[i] }'
}

# goal_record SCRIPT GOAL_TEXT MEASURED_TEXT VALUE CMP LIMIT
# Appends one row to bench/out/SCRIPT.goals.tsv, which bench/run.sh gathers into the goals table
# at the top of BENCHMARKS.md. CMP is "le" (VALUE ≤ LIMIT is met) or "ge"; an empty VALUE is
# recorded as "not measured". Call goal_reset SCRIPT once at the start of a script's run.
goal_reset() {
  local dir="${REPO:?}/bench/out"
  mkdir -p "${dir}"
  : >"${dir}/$1.goals.tsv"
}
goal_record() {
  local script=$1 goal=$2 measured=$3 value=$4 cmp=$5 limit=$6 verdict
  if [ -z "${value}" ]; then
    verdict="not measured"
  else
    verdict=$(awk -v v="${value}" -v l="${limit}" -v c="${cmp}" \
      'BEGIN { ok = (c == "ge") ? (v >= l) : (v <= l); print ok ? "met" : "missed" }')
  fi
  printf '%s\t%s\t%s\t%s\n' "${goal}" "${measured}" "${verdict}" "${script}" \
    >>"${REPO:?}/bench/out/${script}.goals.tsv"
}

# bench_bins: defaults for the binaries under test, from the build dir `make bench` uses
# (${CARGO_TARGET_DIR:-REPO/target}/release); each can be overridden by its variable.
bench_bins() {
  TARGET=${CARGO_TARGET_DIR:-${REPO:?}/target}
  BOSH_DIRECTOR=${BOSH_DIRECTOR:-${TARGET}/release/bosh-director}
  BOSH_RS=${BOSH_RS:-${TARGET}/release/bosh-rs}
  BOSH_AGENT_BIN=${BOSH_AGENT_BIN:-${TARGET}/release/bosh-agent}
  export BOSH_DIRECTOR BOSH_RS BOSH_AGENT_BIN
}

# elapsed T0 [T1]: seconds from T0 to T1 (default now), three decimals
elapsed() { awk -v a="$1" -v b="${2:-$(now_s)}" 'BEGIN { printf "%.3f", b - a }'; }
