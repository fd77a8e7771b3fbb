#!/usr/bin/env bash
# System packages the test suite needs beyond Python: Debian's Chromium for the browser tests.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "ci-system-deps: chromium is missing and cannot be installed here; browser tests will skip" >&2
  fi
fi
