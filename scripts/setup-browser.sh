#!/usr/bin/env bash
# Installs Chromium, the browser the dashboard's tests drive through Playwright (see
# docs/dashboard.md), when it is missing; then says which one the tests will use.
# Playwright's own browser download is not used: the tests launch the system's Chromium.
set -uo pipefail

source "$(dirname "$0")/apt-install.sh"

find_chromium() {
    for name in chromium chromium-browser google-chrome; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

if ! find_chromium >/dev/null; then
    apt_install setup-browser chromium "the dashboard's browser tests skip without it"
fi

if found="$(find_chromium)"; then
    echo "setup-browser: the dashboard's tests use $found"
else
    echo "setup-browser: no Chromium: the dashboard's browser tests will skip" >&2
fi
