#!/usr/bin/env bash
# Make a fresh, committed copy of examples/setup-project/sample for the demo plan to run on.
#
#   scripts/prepare-demo.sh WORKDIR
#
# WORKDIR is deleted first, so running this again always gives the same starting point.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
    echo "usage: $0 WORKDIR" >&2
    exit 2
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sample="$repo_root/examples/setup-project/sample"
workdir="$1"

mkdir -p "$(dirname "$workdir")"
workdir_abs="$(cd "$(dirname "$workdir")" && pwd)/$(basename "$workdir")"
case "$workdir_abs" in
    / | "$repo_root" | "$sample" | "$sample"/* | "$repo_root/examples" | "$repo_root/examples/setup-project")
        echo "refusing to use $workdir_abs as the demo directory" >&2
        exit 2
        ;;
esac

rm -rf "$workdir_abs"
cp -R "$sample" "$workdir_abs"
# Leave out anything a run on sample/ itself may have left behind.
rm -rf "$workdir_abs/.venv" "$workdir_abs/.trestle" "$workdir_abs/config.toml"
find "$workdir_abs" -name __pycache__ -type d -prune -exec rm -rf {} +

cd "$workdir_abs"
git -c init.defaultBranch=main init -q
git add -A
git -c user.name=Trestle -c user.email=trestle@localhost commit -q -m "Import tinyshop"
echo "demo workspace ready: $workdir_abs"
