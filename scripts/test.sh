#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and property tests, the
# integration tests against SQLite, an OpenAPI-driven fuzzer (Schemathesis) against the
# server, a metrics scrape linted by promtool, the integration tests again against a local
# PostgreSQL this script starts, and the end-to-end tests against a local Ceph RGW (S3 + STS)
# with boto3 and a headless Chromium as the clients.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-deps.sh
# A test holds both ends of 1,000 event streams in one process.
ulimit -n 8192 2>/dev/null || true
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings

echo "== unit, property and integration tests (SQLite) =="
cargo test --locked

cleanup() {
  scripts/postgres.sh stop || true
  scripts/rgw.sh stop || true
}
trap cleanup EXIT

echo "== the OpenAPI document against the server (Schemathesis) =="
FUZZ_PYTHON=$(scripts/python.sh fuzz)
MEDIAGATE_TEST_SCHEMATHESIS="$(dirname "$FUZZ_PYTHON")/st" \
  cargo test --locked --test api schemathesis -- --ignored

echo "== a metrics scrape against Prometheus's linter (promtool) =="
MEDIAGATE_TEST_PROMTOOL=$(scripts/promtool.sh) \
  cargo test --locked --test api protection::a_scrape_passes_promtool -- --ignored

echo "== integration tests (PostgreSQL) =="
PG_URL=$(scripts/postgres.sh start)
MEDIAGATE_TEST_POSTGRES_URL="$PG_URL" cargo test --locked --test api

echo "== end-to-end tests against Ceph RGW =="
PYTHON=$(scripts/python.sh)
RGW_URL=$(scripts/rgw.sh start)
MEDIAGATE_TEST_PYTHON="$PYTHON" MEDIAGATE_TEST_RGW_URL="$RGW_URL" \
  cargo test --locked --test api rgw:: -- --ignored
echo "== a real browser (Chromium) uploading through the example page to RGW =="
scripts/web.sh browser test
MEDIAGATE_TEST_PYTHON="$PYTHON" MEDIAGATE_TEST_RGW_URL="$RGW_URL" \
  cargo test --locked --test api browser:: -- --ignored
# Stops the gateway for a while, so it runs alone.
MEDIAGATE_TEST_PYTHON="$PYTHON" MEDIAGATE_TEST_RGW_URL="$RGW_URL" \
  cargo test --locked --test api rgw_outage:: -- --ignored

echo "== the quick-start demo, end to end =="
DEMO_LOG=$(mktemp)
scripts/demo.sh >"$DEMO_LOG" 2>&1 || { cat "$DEMO_LOG"; exit 1; }
echo "demo: 1 passed, 0 failed"
