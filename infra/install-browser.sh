#!/usr/bin/env bash
# Install Debian's chromium for the browser end-to-end test (tests/e2e), only when it is missing.
# Playwright drives this system browser (executable_path=/usr/bin/chromium); it never downloads one.
# Idempotent and quiet: a second run prints one line and exits 0. Needs root (or sudo) and apt.
set -euo pipefail

CHROMIUM="${WARMSTART_CHROMIUM:-/usr/bin/chromium}"

if [[ -x "$CHROMIUM" ]]; then
    echo "chromium present: $CHROMIUM"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: apt-get not found; install chromium yourself and set WARMSTART_CHROMIUM" >&2
    exit 1
fi

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-browser: not root and no sudo; run as root: apt-get install -y chromium" >&2
        exit 1
    fi
fi

echo "installing chromium with apt-get (once; a few minutes)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
/usr/bin/chromium --version
