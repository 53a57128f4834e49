#!/bin/bash
# Benchmark: `create-release --force --tarball` on a release with one package of
# 2,000 generated source files and a 200 MB random blob, from a cold state.
#
#   bench/create_release.sh
#
# Environment:
#   BOSH_RS   bosh-rs binary            (default: ${CARGO_TARGET_DIR:-target}/release/bosh-rs)
#   BOSH_CLI  also time this official bosh CLI binary for comparison (optional)
#   RUNS      timed runs per tool       (default: 3)
#   FILES     generated source files    (default: 2000)
#   BLOB_MB   size of the random blob   (default: 200)
#   BENCH_TMPDIR  where the work dir goes (default: $TMPDIR or /tmp; needs ~1 GB)
#
# The release is built with the CLI under test itself (init-release,
# generate-package, add-blob), plus a hand-written job. Before each timed run
# .dev_builds, dev_releases, the tarball and the ~/.bosh cache are removed
# (HOME points into the work dir), so every run does all the work.
# Writes bench/out/create_release.md.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib/common.sh
source "${REPO}/bench/lib/common.sh"

BOSH_RS=${BOSH_RS:-${CARGO_TARGET_DIR:-${REPO}/target}/release/bosh-rs}
BOSH_CLI=${BOSH_CLI:-}
RUNS=${RUNS:-3}
FILES=${FILES:-2000}
BLOB_MB=${BLOB_MB:-200}
OUT="${REPO}/bench/out/create_release.md"

die() { echo "create_release.sh: $*" >&2; exit 1; }
case "${RUNS}${FILES}${BLOB_MB}" in *[!0-9]*) die "RUNS, FILES and BLOB_MB must be integers" ;; esac
[ "${RUNS}" -ge 1 ] || die "RUNS must be at least 1"
[ -x "${BOSH_RS}" ] || die "${BOSH_RS} not found; build it first: cargo build --release -p bosh-cli"
if [ -n "${BOSH_CLI}" ]; then
  [ -x "${BOSH_CLI}" ] || BOSH_CLI=$(command -v "${BOSH_CLI}") || die "BOSH_CLI=${BOSH_CLI} not found"
fi

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/bench-create-release.XXXXXX")
trap 'rm -rf "${WORK}"' EXIT
export HOME="${WORK}/home" # the CLIs keep their cache in ~/.bosh/cache
mkdir -p "${HOME}"

LOG="${WORK}/cli.log"
run() { # run CLI ARGS... with output to the log; fail loudly
  if ! "$@" >>"${LOG}" 2>&1; then
    echo "create_release.sh: command failed: $*" >&2
    tail -n 30 "${LOG}" >&2
    exit 1
  fi
}

# ---------------------------------------------------------------- the release

# make_release CLI DIR: builds the benchmark release in DIR using CLI
make_release() {
  local cli=$1 rel=$2
  mkdir -p "${rel}"
  run "${cli}" init-release --dir "${rel}"
  run "${cli}" generate-package bench-pkg --dir "${rel}"

  # FILES source files in directories of 100, 1-3 KiB each, deterministic content
  awk -v n="${FILES}" -v root="${rel}/src/bench-pkg" 'BEGIN {
    srand(42)
    for (i = 0; i < n; i++) {
      dir = sprintf("%s/mod%03d", root, int(i / 100))
      if (i % 100 == 0) system("mkdir -p \"" dir "\"")
      f = sprintf("%s/unit%04d.c", dir, i)
      lines = 30 + int(rand() * 60)
      printf "/* generated unit %d */\n#include <stdio.h>\n\n", i > f
      for (l = 0; l < lines; l++)
        printf "int unit%d_f%d(int x) { return x * %d + %d; /* %08x */ }\n", i, l,
          int(rand() * 1000), int(rand() * 100000), int(rand() * 2147483647) > f
      close(f)
    }
  }'

  cat >"${rel}/packages/bench-pkg/spec" <<'EOF'
---
name: bench-pkg
dependencies: []
files:
- bench-pkg/**/*
EOF
  cat >"${rel}/packages/bench-pkg/packaging" <<'EOF'
set -e
cp -a bench-pkg "${BOSH_INSTALL_TARGET}/"
EOF

  run "${cli}" add-blob "${WORK}/blob.bin" bench-pkg/blob.bin --dir "${rel}"

  # a job, written by hand (only the commands above are required of the CLI)
  mkdir -p "${rel}/jobs/bench-job/templates"
  cat >"${rel}/jobs/bench-job/spec" <<'EOF'
---
name: bench-job
templates:
  ctl.erb: bin/ctl
packages:
- bench-pkg
properties:
  port:
    description: unused
    default: 1234
EOF
  printf '#!/bin/bash\necho <%%= p("port") %%>\n' >"${rel}/jobs/bench-job/templates/ctl.erb"
  : >"${rel}/jobs/bench-job/monit"
}

# time_create_release CLI DIR -> prints one duration (seconds) per run, one per line
time_create_release() {
  local cli=$1 rel=$2 i t0 t1
  for i in $(seq 1 "${RUNS}"); do
    rm -rf "${rel}/.dev_builds" "${rel}/dev_releases" "${HOME}/.bosh" "${WORK}/r.tgz"
    sync
    t0=$(now_s)
    run "${cli}" create-release --force --tarball "${WORK}/r.tgz" --dir "${rel}"
    t1=$(now_s)
    [ -s "${WORK}/r.tgz" ] || die "run ${i}: ${cli} did not write ${WORK}/r.tgz"
    awk -v a="${t0}" -v b="${t1}" 'BEGIN { printf "%.3f\n", b - a }'
    echo "  run ${i}/${RUNS}: $(awk -v a="${t0}" -v b="${t1}" 'BEGIN { printf "%.2f", b - a }') s" >&2
  done
}

echo "generating a ${BLOB_MB} MB random blob" >&2
dd if=/dev/urandom of="${WORK}/blob.bin" bs=1M count="${BLOB_MB}" status=none

ROWS=()
bench_tool() { # LABEL CLI
  local label=$1 cli=$2 rel="${WORK}/release-$3" times
  echo "${label}: building the release (${FILES} files + ${BLOB_MB} MB blob)" >&2
  make_release "${cli}" "${rel}"
  echo "${label}: timing create-release, ${RUNS} run(s)" >&2
  mapfile -t times < <(time_create_release "${cli}" "${rel}")
  [ "${#times[@]}" -eq "${RUNS}" ] || die "${label}: expected ${RUNS} timings, got ${#times[@]}"
  ROWS+=("| ${label} | ${RUNS} | **$(median "${times[@]}") s** | $(min_of "${times[@]}") s | $(max_of "${times[@]}") s | $(human_size "${WORK}/r.tgz") |")
  echo "${label}: median $(median "${times[@]}") s (runs: ${times[*]})" >&2
}

rs_version=$("${BOSH_RS}" --version 2>/dev/null | head -n 1) || rs_version=""
bench_tool "bosh-rs${rs_version:+ (${rs_version})}" "${BOSH_RS}" rs
if [ -n "${BOSH_CLI}" ]; then
  ref_version=$("${BOSH_CLI}" --version 2>/dev/null | head -n 1) || ref_version=""
  bench_tool "bosh CLI${ref_version:+ (${ref_version})}" "${BOSH_CLI}" ref
fi

MACHINE=$(machine_summary)
mkdir -p "$(dirname "${OUT}")"
{
  echo "## create-release"
  echo
  echo "A release with one package of ${FILES} generated source files and a ${BLOB_MB} MB random"
  echo "blob (added with \`add-blob\`), plus one job. Each run starts cold (no \`.dev_builds\`,"
  echo "no \`dev_releases\`, empty \`~/.bosh/cache\`) and times"
  echo "\`create-release --force --tarball r.tgz\` end to end."
  echo
  echo "| tool | runs | median | min | max | tarball |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Machine: ${MACHINE}. Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/create_release.sh\`."
} >"${OUT}"
cat "${OUT}"
