#!/bin/bash
# Benchmark: cold compile of the example release (examples/greeter-release) on the sim CPI
# versus its critical path.
#
#   bench/deploy_compile.sh
#
# Environment:
#   BOSH_DIRECTOR, BOSH_RS  binaries under test (default: ${CARGO_TARGET_DIR:-target}/release/…)
#   BOSH_AGENT_BIN          agent the sim CPI starts (default: the release build)
#   RUNS                    runs of each packaging script alone, and cold compiles, each in
#                           a fresh director (default 3)
#   BENCH_TMPDIR            scratch dir location (default $TMPDIR or /tmp)
#
# Critical path: the packages form the chain libgreet → greeter; each packaging script is run
# alone on this host (as the release's test/smoke.sh does: the spec's files staged in a temp
# dir, BOSH_INSTALL_TARGET and BOSH_PACKAGES_DIR set), RUNS times, and the medians along the
# chain are summed. Cold compile: a fresh director (empty compiled-package cache) deploys the
# greeter manifest with the example cloud-config (2 compilation workers, reused VMs, moved to
# 127.3.0.0/24), RUNS times; bench/lib/event_stamps.py stamps each new event-log line of the
# task (10 ms polls), which times the "Compiling packages" stage (first start to last finish,
# compilation VM boots and blob transfers included) and every package in it; medians are
# reported. Writes bench/out/deploy_compile.md.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib/common.sh
source "${REPO}/bench/lib/common.sh"
# shellcheck source=bench/lib/director.sh
source "${REPO}/bench/lib/director.sh"
# shellcheck source=bench/lib/deploy.sh
source "${REPO}/bench/lib/deploy.sh"

bench_bins
RUNS=${RUNS:-3}
OUT="${REPO}/bench/out/deploy_compile.md"
SRC="${REPO}/examples/greeter-release"
DEPLOYMENT=greeter

die() { echo "deploy_compile.sh: $*" >&2; exit 1; }
case "${RUNS}" in '' | *[!0-9]*) die "RUNS must be an integer" ;; esac
deploy_require deploy_compile.sh
command -v cc >/dev/null || die "cc is needed"

deploy_scratch deploy-compile
DEPLOYED= WATCHER=
trap '[ -z "${WATCHER}" ] || kill "${WATCHER}" 2>/dev/null; deploy_cleanup "${DEPLOYED}"' EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ each package alone
# stage PKG DIR: the files the package's spec names, under DIR, as a compilation VM has them
stage() {
  local pkg=$1 dir=$2 glob
  mkdir -p "${dir}"
  for glob in $(sed -n '/^files:/,/^[a-z]/{s/^- //p}' "${SRC}/packages/${pkg}/spec"); do
    (cd "${SRC}/src" && for f in ${glob}; do mkdir -p "${dir}/$(dirname "${f}")" && cp "${f}" "${dir}/${f}"; done)
  done
}
package_alone() {
  local pkg=$1 run=$2 t0
  rm -rf "${WORK}/alone/${pkg}" "${WORK}/alone/packages/${pkg}"
  stage "${pkg}" "${WORK}/alone/${pkg}"
  mkdir -p "${WORK}/alone/packages/${pkg}"
  t0=$(now_s)
  (cd "${WORK}/alone/${pkg}" && BOSH_INSTALL_TARGET="${WORK}/alone/packages/${pkg}" \
    BOSH_PACKAGES_DIR="${WORK}/alone/packages" bash "${SRC}/packages/${pkg}/packaging") \
    >>"${WORK}/alone.log" 2>&1 || { tail "${WORK}/alone.log" >&2; die "packaging ${pkg} failed (run ${run})"; }
  elapsed "${t0}"
}
lib_times=() greeter_times=()
for i in $(seq 1 "${RUNS}"); do
  lib_times+=("$(package_alone libgreet "${i}")")
  greeter_times+=("$(package_alone greeter "${i}")")
done
lib_med=$(median "${lib_times[@]}")
greeter_med=$(median "${greeter_times[@]}")
critical=$(awk -v a="${lib_med}" -v b="${greeter_med}" 'BEGIN { printf "%.3f", a + b }')
echo "alone: libgreet ${lib_med} s, greeter ${greeter_med} s; critical path ${critical} s" >&2

# ------------------------------------------------------------ cold compile in a deploy
cp -R "${SRC}" "${WORK}/greeter-release"
sed -i "s#blobstore_path: .*#blobstore_path: ${WORK}/blobstore#" "${WORK}/greeter-release/config/final.yml"
(cd "${WORK}/greeter-release" && rm -rf .dev_builds dev_releases && git init -q . && git add -A &&
  git -c user.name=bench -c user.email=bench@localhost commit -qm greeter)
# the demo's network, moved so as not to meet a demo running on this host
sed 's/127\.1\.0\./127.3.0./g; s#127\.1\.0\.0/24#127.3.0.0/24#' \
  "${REPO}/examples/manifests/cloud-config-sim.yml" >"${WORK}/cloud.yml"

# cold_compile N: a fresh director deploys the greeter; sets compile_wall, pkg_libgreet,
# pkg_greeter and deploy_wall, then tears the director down
cold_compile() {
  local run=$1 data next t0
  deploy_director_start "${WORK}/director-${run}"
  data="${WORK}/director-${run}/data"
  upload_sim_stemcell "${LOG}"
  bosh "${LOG}" upload-release "${WORK}/greeter-release"
  bosh "${LOG}" -n update-cloud-config "${WORK}/cloud.yml"
  next=$(($(find "${data}/tasks" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -n | tail -n 1) + 1))
  python3 "${REPO}/bench/lib/event_stamps.py" "${data}/tasks/${next}/event" "${WORK}/events-${run}.ts" &
  WATCHER=$!
  DEPLOYED=${DEPLOYMENT}
  t0=$(now_s)
  bosh "${WORK}/deploy-${run}.log" -n -d "${DEPLOYMENT}" deploy "${REPO}/examples/manifests/greeter.yml"
  deploy_wall=$(elapsed "${t0}")
  sleep 0.1
  kill "${WATCHER}" 2>/dev/null || true
  WATCHER=
  eval "$(python3 - "${WORK}/events-${run}.ts" <<'EOF'
# stage wall time and per-package durations from the stamped event log
import json, sys
starts, ends, first, last = {}, {}, None, None
for line in open(sys.argv[1]):
    t, _, body = line.partition(" ")
    try:
        e = json.loads(body)
    except ValueError:
        continue
    if e.get("stage") != "Compiling packages":
        continue
    t = float(t)
    name = e["task"].split("/")[0]
    if e["state"] == "started":
        starts[name] = t
        first = t if first is None else min(first, t)
    elif e["state"] in ("finished", "failed"):
        ends[name] = t
        last = t if last is None else max(last, t)
if first is None:
    sys.exit("no 'Compiling packages' stage in the task: was the cache warm?")
print(f"compile_wall={last - first:.3f}")
for n in sorted(starts):
    print(f"pkg_{n.replace('-', '_')}={ends.get(n, last) - starts[n]:.3f}")
EOF
  )"
  deploy_teardown "${DEPLOYED}"
  DEPLOYED=
}
walls=() libs=() greeters=() deploys=()
for i in $(seq 1 "${RUNS}"); do
  cold_compile "${i}"
  walls+=("${compile_wall}") libs+=("${pkg_libgreet}") greeters+=("${pkg_greeter}") deploys+=("${deploy_wall}")
  echo "cold compile ${i}: stage ${compile_wall} s (libgreet ${pkg_libgreet} s, greeter ${pkg_greeter} s); deploy ${deploy_wall} s" >&2
done
compile_wall=$(median "${walls[@]}")
pkg_libgreet=$(median "${libs[@]}")
pkg_greeter=$(median "${greeters[@]}")
deploy_wall=$(median "${deploys[@]}")
ratio=$(awk -v a="${compile_wall}" -v b="${critical}" 'BEGIN { printf "%.1f", a / b }')
chain_events=$(awk -v a="${pkg_libgreet}" -v b="${pkg_greeter}" 'BEGIN { printf "%.3f", a + b }')

mkdir -p "$(dirname "${OUT}")"
{
  echo "## deploy: cold compile of the example release"
  echo
  echo "\`examples/greeter-release\`: two C packages, libgreet → greeter (the chain is the whole"
  echo "graph). *Alone*: each packaging script run on this host with the spec's files staged,"
  echo "median of ${RUNS}. *Cold compile*: a fresh release-build director (empty compiled-package cache)"
  echo "(median of ${RUNS}, each in a new director) deploys \`examples/manifests/greeter.yml\` on the sim CPI with the example cloud-config"
  echo "(2 workers, reused compilation VMs); the task's event-log lines are stamped as they appear"
  echo "(10 ms polls). Per-package times there include acquiring a compilation VM (first use: create"
  echo "it and wait for its agent) and moving the source and compiled blobs."
  echo
  echo "| measurement | libgreet | greeter | chain |"
  echo "|---|---|---|---|"
  echo "| packaging alone (critical path) | ${lib_med} s | ${greeter_med} s | **${critical} s** |"
  echo "| in the deploy (\"Compiling packages\" tasks) | ${pkg_libgreet} s | ${pkg_greeter} s | ${chain_events} s |"
  echo
  echo "Cold compile (\"Compiling packages\" stage, first start to last finish): **${compile_wall} s**,"
  echo "${ratio}× the critical path (runs: ${walls[*]} s). The whole first deploy took ${deploy_wall} s"
  echo "(CLI end to end, median)."
  echo
  echo "Machine: $(machine_summary). Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/deploy_compile.sh\`."
} >"${OUT}"
cat "${OUT}"
