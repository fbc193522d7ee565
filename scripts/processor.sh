#!/usr/bin/env bash
# The reference processor (examples/processor/processor.py) with the project's Python (boto3,
# from scripts/python.sh) and Debian's ffmpeg, installed if missing.
#   scripts/processor.sh install   only makes sure ffmpeg and the Python environment exist
#   scripts/processor.sh --listen 127.0.0.1:18090 --secret WHSEC --endpoint URL \
#       --access-key AK --secret-key SK [--region us-east-1]
#                                  runs it in the foreground (arguments passed through)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  echo "installing ffmpeg from Debian's packages..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >&2
fi
PY=$(scripts/python.sh)
if [ "${1:-}" = install ]; then
  exit 0
fi
# exec: the caller's process id is the processor's, so stopping it needs no process group.
exec "$PY" examples/processor/processor.py "$@"
