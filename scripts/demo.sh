#!/usr/bin/env bash
# The main job, until deploys land: the release-engineering flow on the example release.
# Works in a scratch copy, so running it twice is safe and the repository stays clean.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
BOSH_RS=${BOSH_RS:-$here/target/release/bosh-rs}
release_src=$here/examples/greeter-release
manifests=$here/examples/manifests

work=$(mktemp -d "${TMPDIR:-/tmp}/bosh-rs-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A private HOME keeps the demo's ~/.bosh/cache apart from the user's.
export HOME=$work/home
mkdir -p "$HOME"

step=0
step() {
  step=$((step + 1))
  printf '\n\033[1m== %d. %s\033[0m\n' "$step" "$*"
}
run() {
  printf '$ bosh-rs %s\n' "$*"
  "$BOSH_RS" "$@"
}

cp -R "$release_src" "$work/greeter-release"
cd "$work/greeter-release"
# The release's local blobstore, private to this run.
sed -i "s#blobstore_path: .*#blobstore_path: $work/blobstore#" config/final.yml
git init -q . && git add -A && git -c user.name=demo -c user.email=demo@localhost commit -qm "greeter release"

step "Create a dev release of the example release (C packages, ERB jobs, an errand)"
run create-release --tarball "$work/greeter-dev.tgz"

step "Inspect the tarball: every archive's digest is verified"
run inspect-local-release "$work/greeter-dev.tgz"

step "Cut final release 1.0.0 (archives go to the release blobstore)"
run create-release --final --version 1.0.0 --tarball "$work/greeter-1.0.0.tgz"

step "Commit the final release; nothing else changed, so a new dev release reuses every build"
git add -A && git -c user.name=demo -c user.email=demo@localhost commit -qm "Final release 1.0.0"
run create-release

step "Render the deployment manifest, scaled by an ops file, with generated credentials"
run interpolate "$manifests/greeter.yml" -o "$manifests/ops/scale-servers-to-5.yml" \
  --vars-store "$work/creds.yml" --path /instance_groups/name=greeter
printf '... (credentials generated into a vars store: %s)\n' \
  "$(grep -c '^[a-z_]*:' "$work/creds.yml" 2>/dev/null || echo 0) variables"

printf '\nDone. Next: the director and deploys (see ARCHITECTURE.md).\n'
