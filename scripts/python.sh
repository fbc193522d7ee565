#!/usr/bin/env bash
# A Python with the real S3 clients the end-to-end tests and the demo use (boto3, urllib3),
# in a virtualenv under target/ so nothing is installed system-wide. Prints its interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MEDIAGATE_VENV:-target/e2e-venv}
REQS=tests/e2e/requirements.txt
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQS" "$VENV/requirements.txt"; then
  echo "installing the Python S3 clients into $VENV..." >&2
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS" >&2
  cp "$REQS" "$VENV/requirements.txt"
fi
echo "$(cd "$VENV" && pwd)/bin/python"
