#!/usr/bin/env bash
# Build the official Go `bosh` CLI from a local bosh-cli source into
# ~/.cache/bosh-rs/official-cli/bosh, for crates/bosh-cli/tests/official_cli.rs.
#
# usage: scripts/official-cli.sh [SOURCE] [--force]
#   SOURCE: a bosh-cli git dir (bare mirror or clone) or a checked-out source tree.
#           Default: the first /work/.mirror/cloudfoundry+bosh-cli*/repo.
#   OFFICIAL_CLI_REF=<tag|commit> picks the version when SOURCE is a git dir. Default: the newest
#           tag if the local Go is new enough for it, else v7.4.1, the newest tag that builds with
#           Go 1.19 (Debian bookworm's golang-go; v7.5.0 needs Go 1.21's context.WithCancelCause).
#
# It downloads nothing: the build uses bosh-cli's vendor/ directory with GOPROXY=off, and the
# source is extracted under the cache directory, never into this repository.
set -euo pipefail

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/bosh-rs/official-cli"
OUT="$CACHE/bosh"
FALLBACK_REF=v7.4.1

force=0
src=""
for arg in "$@"; do
    case "$arg" in
    --force) force=1 ;;
    -h | --help)
        sed -n '2,13p' "$0"
        exit 0
        ;;
    *) src="$arg" ;;
    esac
done

if [[ -x "$OUT" && $force == 0 ]]; then
    echo "official CLI already built: $OUT ($("$OUT" --version 2>/dev/null | head -1))"
    echo "(pass --force to rebuild)"
    exit 0
fi

if [[ -z "$src" ]]; then
    for d in /work/.mirror/cloudfoundry+bosh-cli*/repo /work/.mirror/cloudfoundry+bosh-cli*; do
        if [[ -d "$d" ]] && git --git-dir="$d" rev-parse --verify -q HEAD >/dev/null 2>&1; then
            src="$d"
            break
        fi
    done
fi
if [[ -z "$src" || ! -d "$src" ]]; then
    cat >&2 <<'EOF'
official-cli.sh: no bosh-cli source found.
  Give a bosh-cli git dir or source tree as the first argument, e.g. a clone of
  https://github.com/cloudfoundry/bosh-cli (it vendors its dependencies), or place a mirror at
  /work/.mirror/cloudfoundry+bosh-cli/repo. Nothing was built.
EOF
    exit 2
fi

if ! command -v go >/dev/null 2>&1; then
    echo "official-cli.sh: no Go toolchain on PATH (Debian: apt-get install golang-go)" >&2
    exit 2
fi
gover=$(go env GOVERSION | sed 's/^go//')

# Is Go version $1 >= $2 (major.minor only)?
go_at_least() {
    local a b
    IFS=. read -r -a a <<<"$1"
    IFS=. read -r -a b <<<"$2"
    ((a[0] > b[0] || (a[0] == b[0] && a[1] >= b[1])))
}

mkdir -p "$CACHE"
if [[ -d "$src/vendor" && -f "$src/go.mod" ]]; then
    tree="$src"
    label="local-$(basename "$src")"
else
    gitdir="$src"
    [[ -d "$src/.git" ]] && gitdir="$src/.git"
    ref="${OFFICIAL_CLI_REF:-}"
    if [[ -z "$ref" ]]; then
        newest=$(git --git-dir="$gitdir" tag --list 'v7.*' --sort=-v:refname | head -1)
        need=$(git --git-dir="$gitdir" show "$newest:go.mod" | awk '$1 == "go" { print $2 }')
        if [[ -n "$newest" ]] && go_at_least "$gover" "$need"; then
            ref="$newest"
        else
            ref="$FALLBACK_REF"
        fi
    fi
    commit=$(git --git-dir="$gitdir" rev-parse --verify "$ref^{commit}")
    tree="$CACHE/src-$ref"
    if [[ ! -f "$tree/.extracted-$commit" ]]; then
        rm -rf "$tree"
        mkdir -p "$tree"
        git --git-dir="$gitdir" archive "$commit" | tar -x -C "$tree"
        touch "$tree/.extracted-$commit"
    fi
    label="${ref#v}-${commit:0:8}"
fi

echo "building official bosh CLI $label with Go $gover (vendored deps, no network)..."
(
    cd "$tree"
    export GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0
    export GOCACHE="$CACHE/gocache" GOPATH="$CACHE/gopath"
    module=$(awk '$1 == "module" { print $2; exit }' go.mod)
    go build -trimpath -ldflags "-X $module/cmd.VersionLabel=$label" -o "$OUT.tmp" .
)
mv "$OUT.tmp" "$OUT"
echo "$label" >"$CACHE/VERSION"
echo "built $OUT: $("$OUT" --version | head -1)"
