#!/usr/bin/env bash
# Prometheus's promtool, for the test that lints a metrics scrape: installed from Debian's
# `prometheus` package when missing; prints its path.
set -euo pipefail
if ! command -v promtool >/dev/null; then
  echo "installing promtool from Debian's packages..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2
  # The package starts a Prometheus server where systemd runs; the tests need only the tool.
  { systemctl stop prometheus || service prometheus stop; } >/dev/null 2>&1 || true
fi
command -v promtool
