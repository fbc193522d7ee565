#!/usr/bin/env bash
# A Python virtualenv under target/, so nothing is installed system-wide. Prints its interpreter.
#   scripts/python.sh        the real S3 clients the end-to-end tests and the demo use (boto3)
#   scripts/python.sh fuzz   the API fuzzer (Schemathesis; its `st` command is next to it)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-clients}" in
  clients) VENV=${MEDIAGATE_VENV:-target/e2e-venv}; REQS=tests/e2e/requirements.txt ;;
  fuzz) VENV=target/fuzz-venv; REQS=tests/e2e/requirements-fuzz.txt ;;
  *) echo "usage: $0 [clients|fuzz]" >&2; exit 2 ;;
esac
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQS" "$VENV/requirements.txt"; then
  echo "installing $REQS into $VENV..." >&2
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS" >&2
  cp "$REQS" "$VENV/requirements.txt"
fi
echo "$(cd "$VENV" && pwd)/bin/python"
