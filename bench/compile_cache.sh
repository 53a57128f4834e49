#!/bin/bash
# Benchmark: the cost of a compiled-package cache hit, per package: a second deployment of a
# release whose packages are all compiled already for the stemcell.
#
#   bench/compile_cache.sh
#
# Environment:
#   BOSH_DIRECTOR, BOSH_RS  binaries under test (default: ${CARGO_TARGET_DIR:-target}/release/…)
#   BOSH_AGENT_BIN          agent the sim CPI starts (default: the release build)
#   PACKAGES                packages in the generated release (default 20)
#   RUNS                    deployments measured (default 5)
#   BENCH_TMPDIR            scratch dir location (default $TMPDIR or /tmp)
#
# The release is generated here: PACKAGES tiny packages (each copies one file; every fourth
# starts a new dependency chain, the others depend on the package before), and one job whose
# process is a `sleep`, using all of them. A first deployment (1 instance) compiles every
# package (cold); then RUNS more deployments of 1 instance each use the same release and
# stemcell, so every package is a cache hit. Each deploy's compile phase is read from the
# director's own metrics (`GET /metrics`: the growth of
# bosh_director_deploy_phase_duration_seconds_sum{phase="compile"}); the check that nothing was
# compiled is that create_vm ran once (the instance's VM: no compilation VM) and the task
# has no "Compiling packages" stage. Cost per package = compile phase / PACKAGES.
# On exit the deployments are deleted and what is left under the scratch dir is killed by pid.
# Writes bench/out/compile_cache.md and compile_cache.goals.tsv.
#
# goal: compiled-package cache hit ≤ 50 ms per package
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib/common.sh
source "${REPO}/bench/lib/common.sh"
# shellcheck source=bench/lib/director.sh
source "${REPO}/bench/lib/director.sh"
# shellcheck source=bench/lib/deploy.sh
source "${REPO}/bench/lib/deploy.sh"

bench_bins
PACKAGES=${PACKAGES:-20}
RUNS=${RUNS:-5}
OUT="${REPO}/bench/out/compile_cache.md"
GOAL_MS=50

die() { echo "compile_cache.sh: $*" >&2; exit 1; }
case "${PACKAGES}${RUNS}" in *[!0-9]*) die "PACKAGES and RUNS must be integers" ;; esac
[ "${PACKAGES}" -ge 1 ] && [ "${RUNS}" -ge 1 ] || die "PACKAGES and RUNS must be at least 1"
deploy_require compile_cache.sh
goal_reset compile_cache

deploy_scratch compile-cache
DEPLOYED=()
trap 'deploy_cleanup "${DEPLOYED[@]}"' EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ release: PACKAGES packages
rel="${WORK}/pkgs-release"
bosh "${LOG}" init-release --dir "${rel}"
names=()
for k in $(seq 1 "${PACKAGES}"); do
  p=$(printf 'pkg-%03d' "${k}")
  names+=("${p}")
  mkdir -p "${rel}/packages/${p}" "${rel}/src/${p}"
  echo "payload of ${p}" >"${rel}/src/${p}/data.txt"
  deps="[]"
  [ $((k % 4)) -ne 1 ] && deps="[$(printf 'pkg-%03d' $((k - 1)))]"
  printf -- '---\nname: %s\ndependencies: %s\nfiles:\n- %s/data.txt\n' "${p}" "${deps}" "${p}" \
    >"${rel}/packages/${p}/spec"
  printf 'set -e\ncp %s/data.txt "${BOSH_INSTALL_TARGET}/"\n' "${p}" >"${rel}/packages/${p}/packaging"
done
idler_job_write "${rel}" "${names[@]}"
release_tarball "${LOG}" "${rel}" pkgs "${WORK}/pkgs.tgz"

# ------------------------------------------------------------ director, stemcell, configs
deploy_env_start "${LOG}" "${WORK}/pkgs.tgz"
sim_cloud_config_update "${LOG}" 127.6.0.0/24 z1

# metric NAME LABELS: a sample's value from GET /metrics (0 when absent)
metric() {
  dcurl --fail "${DIRECTOR_URL}/metrics" | awk -v s="$1{$2}" '$1 == s { v = $2 } END { print v + 0 }'
}
compile_sum() { metric bosh_director_deploy_phase_duration_seconds_sum 'phase="compile"'; }
create_vms() { metric bosh_director_cpi_call_duration_seconds_count 'method="create_vm"'; }

# deploy_measured NAME: deploys NAME; prints "compile_seconds create_vm_calls compile_stage_events"
deploy_measured() {
  local name=$1 s0 v0 s1 v1 id stages
  idler_manifest "${name}" pkgs z1 1 idler=1 >"${WORK}/${name}.yml"
  s0=$(compile_sum) v0=$(create_vms)
  : >"${WORK}/${name}.log"
  DEPLOYED+=("${name}")
  bosh "${WORK}/${name}.log" -n -d "${name}" deploy "${WORK}/${name}.yml"
  s1=$(compile_sum) v1=$(create_vms)
  id=$(task_of "${WORK}/${name}.log")
  stages=$(grep -c '"stage":"Compiling packages"' "${DATA}/tasks/${id}/event" || true)
  awk -v a="${s0}" -v b="${s1}" -v c="${v0}" -v d="${v1}" -v e="${stages}" \
    'BEGIN { printf "%.6f %d %d\n", b - a, d - c, e }'
}

echo "cold: deploying 'cold' (compiles ${PACKAGES} packages)" >&2
deploy_measured cold >"${WORK}/measured"
read -r cold_s cold_vms cold_events <"${WORK}/measured"
[ "${cold_events}" -gt 0 ] || die "the first deploy compiled nothing"
echo "cold compile phase ${cold_s} s (${cold_vms} create_vm calls)" >&2

per_pkg=() phase_ms=()
for run in $(seq 1 "${RUNS}"); do
  deploy_measured "hit-${run}" >"${WORK}/measured"
  read -r s vms events <"${WORK}/measured"
  [ "${events}" -eq 0 ] || die "deployment hit-${run} compiled packages (${events} events): no cache hit"
  [ "${vms}" -eq 1 ] || die "deployment hit-${run} made ${vms} VMs (expected only its instance's)"
  phase_ms+=("$(awk -v s="${s}" 'BEGIN { printf "%.3f", s * 1000 }')")
  per_pkg+=("$(awk -v s="${s}" -v n="${PACKAGES}" 'BEGIN { printf "%.3f", s * 1000 / n }')")
  echo "hit-${run}: compile phase ${phase_ms[-1]} ms, ${per_pkg[-1]} ms per package" >&2
done

med=$(median "${per_pkg[@]}")
verdict=$(awk -v v="${med}" -v g="${GOAL_MS}" 'BEGIN { print (v <= g) ? "met" : "**missed**" }')
goal_record compile_cache "compiled-package cache hit ≤ 50 ms per package" \
  "${med} ms per package (${PACKAGES} packages, median of ${RUNS} deploys)" "${med}" le "${GOAL_MS}"
mkdir -p "$(dirname "${OUT}")"
{
  echo "## deploy: compiled-package cache hit"
  echo
  echo "A generated release of ${PACKAGES} tiny packages (chains of 4 dependencies) and one job using them all,"
  echo "on a release-build \`bosh-director\` with the sim CPI. A first deployment compiles every package"
  echo "(compile phase $(printf "%.2f" "${cold_s}") s, 2 reused compilation VMs); then ${RUNS} more deployments of 1 instance each"
  echo "use the same release and stemcell: no compilation VM and no \"Compiling packages\" stage, every"
  echo "package is a cache hit. The compile phase of each is read from the director's \`/metrics\`"
  echo "(\`bosh_director_deploy_phase_duration_seconds{phase=\"compile\"}\`); per package = phase / ${PACKAGES}."
  echo
  echo "| measurement | runs | median | min | max | goal |"
  echo "|---|---|---|---|---|---|"
  echo "| cache hit, per package | ${RUNS} | **${med} ms** | $(min_of "${per_pkg[@]}") ms | $(max_of "${per_pkg[@]}") ms | ≤ ${GOAL_MS} ms: ${verdict} |"
  echo "| compile phase, ${PACKAGES} packages all cached | ${RUNS} | $(median "${phase_ms[@]}") ms | $(min_of "${phase_ms[@]}") ms | $(max_of "${phase_ms[@]}") ms | |"
  echo
  echo "Machine: $(machine_summary); load average when done: $(cut -d' ' -f1-3 /proc/loadavg). Measured $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/compile_cache.sh\`."
} >"${OUT}"
cat "${OUT}"
