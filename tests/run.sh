#!/usr/bin/env bash
# Runs every check a change must pass: format, lints, unit and integration tests.
# Installs what the tests need (dig) when it is missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dig >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bind9-dnsutils >/dev/null
  else
    echo "tests: dig is missing: apt-get install bind9-dnsutils" >&2
    exit 1
  fi
fi
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test
