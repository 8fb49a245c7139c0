#!/usr/bin/env bash
# What the web app and its browser tests need, installed from package registries only:
# npm packages from web/package-lock.json (`npm ci`), and Debian's Chromium if /usr/bin/chromium
# is missing. Each step is skipped when already done; a registry that cannot be reached stops
# the script with one clear message.
set -euo pipefail
cd "$(dirname "$0")"

fail() { echo "web/setup.sh: $*" >&2; exit 1; }

command -v node >/dev/null && command -v npm >/dev/null ||
  fail "Node.js and npm are needed (Debian: apt-get install nodejs npm)."

# npm ci only when the lockfile changed since the last install.
stamp=node_modules/.installed-$(sha1sum package-lock.json | cut -c1-12)
if [[ ! -e $stamp ]]; then
  echo "web/setup.sh: installing npm packages from package-lock.json (npm ci)..."
  log=$(mktemp)
  if ! npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
    tail -20 "$log" >&2
    if grep -qiE 'ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|network' "$log"; then
      fail "the npm registry cannot be reached: npm ci failed (see above)."
    fi
    fail "npm ci failed (see above)."
  fi
  rm -f "$log" node_modules/.installed-*
  touch "$stamp"
fi

if [[ ! -x /usr/bin/chromium ]]; then
  echo "web/setup.sh: installing Debian's chromium (apt-get)..."
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  log=$(mktemp)
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      $sudo apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    tail -20 "$log" >&2
    fail "Debian's package sources cannot be reached or refused chromium: apt-get failed (see above)."
  fi
  rm -f "$log"
fi
