#!/usr/bin/env bash
# The demo `make demo` runs: the sample plan on a fresh copy of the sample project, with
# the human part included. Everything runs; the irreversible commit waits for approval;
# the approval is given here (on a terminal, `trestle run` asks you itself); the run
# resumes and finishes.
#
#   scripts/demo.sh TRESTLE_BIN
set -euo pipefail

trestle="${1:-trestle}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export TRESTLE_STORE="$repo_root/.trestle/trestle.db"

scripts/prepare-demo.sh .demo/sample
status=0
"$trestle" run examples/setup-project/plan.yaml --workspace .demo/sample --no-prompt \
    --report-json .demo/report.json || status=$?
if [[ $status -ne 3 ]]; then
    echo "expected the run to wait for an approval (exit 3), got exit $status" >&2
    exit 1
fi

echo
echo "== the inbox: the commit waits for a human =="
"$trestle" inbox
ref="$("$trestle" inbox --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["ref"])')"

echo "== approving $ref (what you would type: trestle approve $ref) =="
"$trestle" approve "$ref" --reason "demo: tests passed, commit reviewed"
"$trestle" resume "${ref%.*}" --no-prompt --report-json .demo/report.json

echo
echo "== delegation: two children prepare a release in parallel, within their parent =="
rm -rf .demo/release && mkdir -p .demo/release
"$trestle" run examples/delegation/plan.yaml --workspace .demo/release --no-prompt --no-live
"$trestle" runs | head -8

echo
echo "== the coding agent on a sample repository (a recorded trajectory, replayed offline) =="
rm -rf .demo/agent && mkdir -p .demo/agent
"$trestle" demo --dir .demo/agent

echo
echo "== an MCP server's destructive tool waits for approval (skipped, saying so, without the mcp extra) =="
rm -rf .demo/mcp && mkdir -p .demo/mcp
"$trestle" demo --mcp --dir .demo/mcp
