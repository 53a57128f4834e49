#!/bin/bash
# Benchmark: uploading a release with a 1 GiB random package blob to a release-build
# bosh-director, timed end to end, with the director's peak RSS growth.
#
#   bench/director_upload.sh
#
# Environment:
#   BOSH_DIRECTOR  director binary  (default: $CARGO_TARGET_DIR or target, /release/bosh-director)
#   BOSH_RS        CLI that builds the release once (default: same dir, bosh-rs)
#   BLOB_MB        size of the random package blob in MiB (default: 1024)
#   RUNS           uploads, each to a fresh director (default: 2)
#   BENCH_CACHE    where the release tarball is kept between runs
#                  (default: ~/.cache/bosh-rs/bench)
#   BENCH_TMPDIR   where data dirs go (default: $TMPDIR or /tmp; needs ~3x BLOB_MB free)
#
# The tarball is built once with `bosh-rs create-release` (init-release, generate-package,
# add-blob of BLOB_MB MiB from /dev/urandom, one job) and cached. Each run starts a fresh
# director, warms it with two requests, reads VmHWM from /proc/PID/status, POSTs the tarball
# as the raw body with curl (`-T`, streamed from disk), polls the task until it ends, and reads
# VmHWM again. Wall time runs from the first byte sent to the task's end.
# Writes bench/out/director_upload.md and director_upload.goals.tsv.
#
# goal: 1 GiB release upload: director peak RSS growth ≤ 64 MiB
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib/common.sh
source "${REPO}/bench/lib/common.sh"
# shellcheck source=bench/lib/director.sh
source "${REPO}/bench/lib/director.sh"

bench_bins
BLOB_MB=${BLOB_MB:-1024}
RUNS=${RUNS:-2}
CACHE=${BENCH_CACHE:-${HOME}/.cache/bosh-rs/bench}/upload-${BLOB_MB}m
OUT="${REPO}/bench/out/director_upload.md"
GOAL_MIB=64

die() { echo "director_upload.sh: $*" >&2; exit 1; }
case "${RUNS}${BLOB_MB}" in *[!0-9]*) die "RUNS and BLOB_MB must be integers" ;; esac
[ "${RUNS}" -ge 1 ] || die "RUNS must be at least 1"
for b in "${BOSH_DIRECTOR}" "${BOSH_RS}"; do
  [ -x "${b}" ] || die "${b} not found; build it first: cargo build --release -p bosh-director -p bosh-cli"
done
command -v curl >/dev/null || die "curl is needed"
goal_reset director_upload

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/bench-director-upload.XXXXXX")
trap 'director_stop; rm -rf "${WORK}"' EXIT

# ------------------------------------------------------------ the release, built once
TARBALL="${CACHE}/release.tgz"
if [ ! -s "${TARBALL}" ]; then
  echo "building a release with a ${BLOB_MB} MiB random blob into ${CACHE} (once)" >&2
  mkdir -p "${CACHE}"
  rel="${WORK}/release"
  log="${WORK}/build.log"
  run() { "$@" >>"${log}" 2>&1 || { tail -n 30 "${log}" >&2; die "failed: $*"; }; }
  mkdir -p "${WORK}/home" # the CLI's ~/.bosh cache goes here, not in the real home
  run "${BOSH_RS}" init-release --dir "${rel}"
  run "${BOSH_RS}" generate-package big --dir "${rel}"
  printf -- '---\nname: big\ndependencies: []\nfiles:\n- big/blob.bin\n' >"${rel}/packages/big/spec"
  printf 'set -e\ncp big/blob.bin "${BOSH_INSTALL_TARGET}/"\n' >"${rel}/packages/big/packaging"
  dd if=/dev/urandom of="${WORK}/blob.bin" bs=1M count="${BLOB_MB}" status=none
  HOME="${WORK}/home" run "${BOSH_RS}" add-blob "${WORK}/blob.bin" big/blob.bin --dir "${rel}"
  rm -f "${WORK}/blob.bin"
  mkdir -p "${rel}/jobs/big-job/templates"
  printf -- '---\nname: big-job\ntemplates: {}\npackages:\n- big\nproperties: {}\n' >"${rel}/jobs/big-job/spec"
  : >"${rel}/jobs/big-job/monit"
  HOME="${WORK}/home" run "${BOSH_RS}" create-release --force --name big-release \
    --tarball "${CACHE}/release.tgz.part" --dir "${rel}"
  mv "${CACHE}/release.tgz.part" "${TARBALL}"
  rm -rf "${rel}" "${WORK}/home"
fi
SIZE=$(human_size "${TARBALL}")
echo "release tarball: ${TARBALL} (${SIZE})" >&2

# ------------------------------------------------------------ timed uploads
walls=() uploads=() growths=() peaks=()
for i in $(seq 1 "${RUNS}"); do
  data="${WORK}/director-${i}"
  director_start "${data}"
  dcurl -o /dev/null "${DIRECTOR_URL}/info"
  dcurl -o /dev/null "${DIRECTOR_URL}/tasks?limit=1"
  before=$(proc_kib "${DIRECTOR_PID}" VmHWM)
  t0=$(now_s)
  headers=$(dcurl -X POST -H 'Content-Type: application/x-compressed' -H 'Expect:' \
    -T "${TARBALL}" -o /dev/null -D - "${DIRECTOR_URL}/releases")
  t1=$(now_s)
  task=$(printf '%s' "${headers}" | tr -d '\r' | sed -n 's|^[Ll]ocation: .*/tasks/\([0-9]*\)$|\1|p')
  [ -n "${task}" ] || die "run ${i}: no task in the upload response: ${headers}"
  result=$(task_wait "${task}")
  t2=$(now_s)
  case "${result}" in *'"state":"done"'*) ;; *) die "run ${i}: task ${task} failed: ${result}" ;; esac
  after=$(proc_kib "${DIRECTOR_PID}" VmHWM)
  director_stop
  rm -rf "${data}"
  wall=$(awk -v a="${t0}" -v b="${t2}" 'BEGIN { printf "%.3f", b - a }')
  up=$(awk -v a="${t0}" -v b="${t1}" 'BEGIN { printf "%.3f", b - a }')
  growth=$(awk -v a="${before}" -v b="${after}" 'BEGIN { printf "%.1f", (b - a) / 1024 }')
  peak=$(awk -v b="${after}" 'BEGIN { printf "%.1f", b / 1024 }')
  walls+=("${wall}") uploads+=("${up}") growths+=("${growth}") peaks+=("${peak}")
  echo "  run ${i}/${RUNS}: ${wall} s (body sent in ${up} s), VmHWM ${before} -> ${after} KiB (+${growth} MiB)" >&2
done

max_growth=$(max_of "${growths[@]}")
verdict=$(awk -v g="${max_growth}" -v goal="${GOAL_MIB}" 'BEGIN { print (g <= goal) ? "met" : "**missed**" }')
goal_record director_upload "1 GiB release upload: director peak RSS growth ≤ 64 MiB" \
  "${max_growth} MiB (largest of ${RUNS} uploads of ${SIZE}; wall median $(median "${walls[@]}") s)" \
  "${max_growth}" le "${GOAL_MIB}"
MACHINE=$(machine_summary)
mkdir -p "$(dirname "${OUT}")"
{
  echo "## director: ${BLOB_MB} MiB release upload"
  echo
  echo "A release tarball (${SIZE}) with one package holding a ${BLOB_MB} MiB random blob, POSTed"
  echo "as a raw body (\`curl -T\`) to a fresh release-build \`bosh-director\` (SQLite, local"
  echo "blobstore, same disk). Wall time runs from the first byte sent until the \`update_release\`"
  echo "task is done (body streamed to disk, tarball extracted and verified, blobs stored by"
  echo "content). RSS growth is the director's VmHWM after the task minus VmHWM after two warm-up"
  echo "requests (goal: at most ${GOAL_MIB} MiB)."
  echo
  echo "| runs | wall median | min | max | body sent (median) | peak RSS growth (max) | peak RSS |"
  echo "|---|---|---|---|---|---|---|"
  echo "| ${RUNS} | **$(median "${walls[@]}") s** | $(min_of "${walls[@]}") s | $(max_of "${walls[@]}") s | $(median "${uploads[@]}") s | **${max_growth} MiB** (goal ≤ ${GOAL_MIB}: ${verdict}) | $(max_of "${peaks[@]}") MiB |"
  echo
  echo "Machine: ${MACHINE}. Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/director_upload.sh\`."
} >"${OUT}"
cat "${OUT}"
