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
