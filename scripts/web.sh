#!/usr/bin/env bash
# The browser client: the npm packages of clients/web from its lockfile, and the build
# (dist/ and the example page's example/dist/).
#   scripts/web.sh                build
#   scripts/web.sh browser        also install Debian's Chromium for the browser tests, if missing
#   scripts/web.sh test           also run the client's unit tests (Node's own test runner)
#   scripts/web.sh browser test   both
set -euo pipefail
cd "$(dirname "$0")/.."
browser=false
unit=false
for arg in "$@"; do
  case "$arg" in
    browser) browser=true ;;
    test) unit=true ;;
    *) echo "usage: $0 [browser] [test]" >&2; exit 2 ;;
  esac
done
if $browser && ! command -v chromium >/dev/null; then
  echo "installing Chromium from Debian's packages..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
fi
cd clients/web
npm ci --no-audit --no-fund --loglevel=error >&2
node build.mjs >&2
if $unit; then
  npm test --silent
fi
