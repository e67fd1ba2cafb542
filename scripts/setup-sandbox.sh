#!/usr/bin/env bash
# Installs bubblewrap, the sandbox every command of a run executes in (see
# docs/security.md), when it is missing; then says whether it can make a sandbox here.
# Without it Trestle still runs, says so loudly, and refuses confirm-tier commands
# unless you pass --sandbox off.
set -uo pipefail

if ! command -v bwrap >/dev/null 2>&1; then
    if [[ "$(uname -s)" != Linux ]]; then
        echo "setup-sandbox: no sandbox on $(uname -s): bubblewrap is Linux-only" >&2
        exit 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup-sandbox: bubblewrap is missing and there is no apt-get; install it" \
            "with your package manager" >&2
        exit 0
    fi
    sudo=""
    if [[ "$(id -u)" != 0 ]]; then
        sudo="sudo"
    fi
    echo "setup-sandbox: installing bubblewrap"
    $sudo apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
        || { $sudo apt-get update -qq >/dev/null 2>&1 \
             && $sudo apt-get install -y -qq bubblewrap >/dev/null 2>&1; } \
        || echo "setup-sandbox: could not install bubblewrap" >&2
fi

if bwrap --unshare-all --ro-bind / / --proc /proc /bin/true 2>/dev/null; then
    echo "setup-sandbox: bubblewrap works here"
else
    echo "setup-sandbox: bubblewrap cannot make a sandbox here (unprivileged user" \
        "namespaces may be off: sysctl kernel.unprivileged_userns_clone=1)" >&2
fi
