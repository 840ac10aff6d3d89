#!/usr/bin/env bash
# Install the Debian packages the tests start, when missing: chromium (+ fonts) for the report's
# browser test and `render: js`, postgresql and redis-server for the CeleryExecutor scale test.
# Idempotent: does nothing when all are present. Needs root (or sudo) and apt. `make test` runs it.
set -euo pipefail

missing=()
if ! { [ -x /usr/bin/chromium ] && /usr/bin/chromium --version >/dev/null 2>&1; }; then
    missing+=(chromium fonts-liberation)  # fonts: real glyph metrics, so the report's SVG text has a size
fi
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)

if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages present: chromium, postgresql, redis-server"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install-system-packages: need root (or sudo) to apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

echo "installing ${missing[*]} (apt)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packaged clusters and servers are not used (tests start their own on free ports): stop them.
if [[ " ${missing[*]} " == *" postgresql "* || " ${missing[*]} " == *" redis-server "* ]]; then
    $SUDO service postgresql stop >/dev/null 2>&1 || true
    $SUDO service redis-server stop >/dev/null 2>&1 || true
fi
/usr/bin/chromium --version 2>/dev/null || true
