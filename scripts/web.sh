#!/usr/bin/env bash
# The browser client: the npm packages of clients/web from its lockfile, and the build
# (dist/ and the example page's example/dist/).
#   scripts/web.sh           build
#   scripts/web.sh browser   also install Debian's Chromium for the browser tests, if missing
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = browser ] && ! command -v chromium >/dev/null; then
  echo "installing Chromium from Debian's packages..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
fi
cd clients/web
npm ci --no-audit --no-fund --loglevel=error >&2
node build.mjs >&2
