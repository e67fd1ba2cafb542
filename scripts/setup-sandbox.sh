#!/usr/bin/env bash
# Installs bubblewrap, the sandbox every command of a run executes in (see
# docs/security.md), when it is missing; then says whether it can make a sandbox here.
# Without it Trestle still runs, says so loudly, and refuses confirm-tier commands
# unless you pass --sandbox off.
set -uo pipefail

source "$(dirname "$0")/apt-install.sh"

if ! command -v bwrap >/dev/null 2>&1; then
    if [[ "$(uname -s)" != Linux ]]; then
        echo "setup-sandbox: no sandbox on $(uname -s): bubblewrap is Linux-only" >&2
        exit 0
    fi
    apt_install setup-sandbox bubblewrap "without it, commands run unconfined and Trestle says so"
fi

if bwrap --unshare-all --ro-bind / / --proc /proc /bin/true 2>/dev/null; then
    echo "setup-sandbox: bubblewrap works here"
else
    echo "setup-sandbox: bubblewrap cannot make a sandbox here (unprivileged user" \
        "namespaces may be off: sysctl kernel.unprivileged_userns_clone=1)" >&2
fi
