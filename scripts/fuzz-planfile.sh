#!/bin/sh
# A long plan-file fuzz campaign: the seeded suite of tests/test_fuzz_planfile.py with
# many more cases (default 20000; give another count as the first argument).
set -eu
cd "$(dirname "$0")/.."
TRESTLE_FUZZ_CASES="${1:-20000}" exec .venv/bin/pytest -q tests/test_fuzz_planfile.py
