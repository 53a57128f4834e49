#!/usr/bin/env bash
# Installs what building, testing and the demo need, only when it is missing, so a fresh
# machine needs nothing but this repository. Debian packages only (apt-get).
set -euo pipefail

# command -> Debian package that provides it
declare -A needs=(
  [cc]=gcc
  [make]=make
  [git]=git
  [tar]=tar
  [gzip]=gzip
  [curl]=curl
  [python3]=python3
  # ERB rendering (example-release template checks now; the director's renderer later)
  [ruby]=ruby
  # the message bus between director and agents
  [nats-server]=nats-server
  # docker stemcells are debootstrapped Debian; the docker CPI's tests import a busybox rootfs
  [debootstrap]=debootstrap
  [busybox]=busybox-static
  # `bosh-rs ssh`/`scp`: key pairs and the sessions themselves
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [scp]=openssh-client
)

missing=()
for cmd in "${!needs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needs[$cmd]}")
done
# The director's tests also run against a throwaway PostgreSQL server (scripts/with-postgres.sh).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo is missing; install the Rust toolchain named in rust-toolchain.toml" >&2
  exit 1
fi
