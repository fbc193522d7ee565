#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and property tests, and the
# integration tests against SQLite and then against a local PostgreSQL this script starts.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings

echo "== unit, property and integration tests (SQLite) =="
cargo test --locked

echo "== integration tests (PostgreSQL) =="
PG_URL=$(scripts/postgres.sh start)
trap 'scripts/postgres.sh stop' EXIT
MEDIAGATE_TEST_POSTGRES_URL="$PG_URL" cargo test --locked --test api
