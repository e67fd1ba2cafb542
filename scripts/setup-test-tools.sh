#!/usr/bin/env bash
# Installs what the tests need beside Trestle, three jobs at once, since none waits on
# another: the system's packages (Chromium, then PostgreSQL: apt takes one at a time),
# LiteLLM's proxy in a virtualenv of its own, and the test, lint and benchmark extras
# into the project's virtualenv. apt mostly waits on the disk and the network, and
# each pip keeps one core busy: on 2 cores, with the system's packages already there,
# LiteLLM's install took 81 s and the extras' 76 s one after the other, and the whole
# setup, Trestle's own install first, 90 s with them side by side.
#
# Usage: scripts/setup-test-tools.sh PIP EXTRAS   (PYTHON in the environment, as the
# Makefile sets it). Each job's output is printed whole when all have ended; the
# script fails when any job did (the browser's and PostgreSQL's scripts only warn: the
# tests that need what they could not install say so).
set -uo pipefail

pip="$1"
extras="$2"
here="$(dirname "$0")"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

("$here/setup-browser.sh" && "$here/setup-postgres.sh") >"$logs/system" 2>&1 &
system=$!
"$here/setup-litellm.sh" >"$logs/litellm" 2>&1 &
litellm=$!
"$pip" install --quiet -e ".[$extras]" >"$logs/extras" 2>&1 &
extras_job=$!

status=0
for job in system:$system litellm:$litellm extras:$extras_job; do
    name="${job%%:*}"
    if ! wait "${job##*:}"; then
        echo "setup-test-tools: $name failed" >"$logs/$name.failed"
        status=1
    fi
done
for name in system litellm extras; do
    cat "$logs/$name"
    [[ -e "$logs/$name.failed" ]] && cat "$logs/$name.failed" >&2
done
exit "$status"
