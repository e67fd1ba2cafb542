#!/usr/bin/env bash
# Installs Chromium, the browser the dashboard's tests drive through Playwright (see
# docs/dashboard.md), when it is missing; then says which one the tests will use.
# Playwright's own browser download is not used: the tests launch the system's Chromium.
set -uo pipefail

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
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup-browser: Chromium is missing and there is no apt-get; install it" \
            "with your package manager (the dashboard's browser tests skip without it)" >&2
        exit 0
    fi
    sudo=""
    if [[ "$(id -u)" != 0 ]]; then
        sudo="sudo"
    fi
    echo "setup-browser: installing chromium"
    $sudo apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { $sudo apt-get update -qq >/dev/null 2>&1 \
             && $sudo apt-get install -y -qq chromium >/dev/null 2>&1; } \
        || echo "setup-browser: could not install chromium" >&2
fi

if found="$(find_chromium)"; then
    echo "setup-browser: the dashboard's tests use $found"
else
    echo "setup-browser: no Chromium: the dashboard's browser tests will skip" >&2
fi
