#!/usr/bin/env bash
# The headless browser of the browser tests (tests/browser.py: /docs, the progress
# stream): Debian's chromium. Prints its path. Installs it with apt-get when it is missing
# and we may (root, apt-get present); otherwise says why and exits 1, and the tests are
# skipped with that reason. CHROMIUM may name another executable.
set -euo pipefail
for candidate in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    echo "$candidate"
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no chromium and no apt-get: install a chromium and set CHROMIUM" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "no chromium: run 'sudo apt-get install -y chromium' (or set CHROMIUM)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends chromium >&2 \
  || { apt-get update >&2 && apt-get install -y --no-install-recommends chromium >&2; }
echo /usr/bin/chromium
