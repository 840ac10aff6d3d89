#!/usr/bin/env bash
# Install Debian's headless-capable chromium for tests/test_report_browser.py.
# Idempotent: does nothing when /usr/bin/chromium already runs. Needs root (or sudo) and apt.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ] && "$CHROMIUM" --version >/dev/null 2>&1; then
    # (Debian's wrapper script prints a harmless shell warning on stderr on some hosts)
    echo "chromium present: $("$CHROMIUM" --version 2>/dev/null)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install-chromium: need root (or sudo) to apt-get install chromium" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# fonts-liberation: real glyph metrics, so text in the report's SVG charts has a size.
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null

"$CHROMIUM" --version 2>/dev/null
