#!/usr/bin/env bash
# Runs every check a change must pass: format, lints, unit and integration tests.
# Installs what the tests need when it is missing and we are root: dig (bind9-dnsutils),
# haproxy (tests/demo.rs: the demo's regions), openssl (tests/prober.rs: a test CA for HTTPS checks),
# knotd (tests/knot_services.rs: services compared with Knot), promtool (tests/operator_files.rs:
# the alert rules), chromium (tests/status_page.rs: the status page in a real browser), PyYAML (tests/deploy.rs: the
# Kubernetes manifests), for tests/dnssec.rs delv (bind9-dnsutils), unbound (the resolver of
# the chain from a Knot-signed parent) and dnspython with cryptography (the second validator),
# and etcd (tests/cluster.rs: a real 3-member etcd for cluster mode) and protoc (for builds that
# use etcd's gRPC crate; gslbd itself talks to etcd's JSON gateway), so CI never skips a test
# for want of a tool.
set -euo pipefail
cd "$(dirname "$0")/.."
need_pkgs=()
{ command -v dig >/dev/null && command -v delv >/dev/null; } || need_pkgs+=(bind9-dnsutils)
command -v unbound >/dev/null || need_pkgs+=(unbound)
command -v haproxy >/dev/null || need_pkgs+=(haproxy)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v knotd >/dev/null || need_pkgs+=(knot)
command -v promtool >/dev/null || need_pkgs+=(prometheus)
command -v chromium >/dev/null || need_pkgs+=(chromium)
command -v etcd >/dev/null || need_pkgs+=(etcd-server)
command -v protoc >/dev/null || need_pkgs+=(protobuf-compiler)
python3 -c 'import yaml' 2>/dev/null || need_pkgs+=(python3-yaml)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "tests: missing ${need_pkgs[*]}: apt-get install ${need_pkgs[*]}" >&2
    exit 1
  fi
fi
# A python3 other than Debian's (pyenv, a venv) does not see python3-yaml.
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
# tests/openapi.rs: the OpenAPI document and the server's responses are checked with these.
python3 -c 'import openapi_spec_validator, jsonschema' 2>/dev/null \
  || python3 -m pip install --quiet openapi-spec-validator jsonschema
# tests/dnssec.rs: dnspython's validator; dnspython 2.9 needs cryptography >= 50 for it.
python3 -c 'import dns._features as f, sys; sys.exit(0 if f.have("dnssec") else 1)' 2>/dev/null \
  || python3 -m pip install --quiet --upgrade dnspython 'cryptography>=50'
cargo fmt --check
# The module graph points one way (tests/architecture.rs); first, as it fails in seconds.
cargo test --quiet --test architecture
cargo clippy --all-targets --quiet -- -D warnings
cargo test
