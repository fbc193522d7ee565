#!/usr/bin/env bash
# What building mediagate needs beyond the Rust toolchain: the system OpenSSL it links for RSA
# signature checks (headers and pkg-config), installed from Debian's packages when missing.
set -euo pipefail
if ! pkg-config --exists openssl 2>/dev/null; then
  echo "installing OpenSSL's headers and pkg-config from Debian's packages..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libssl-dev pkg-config >&2
fi
