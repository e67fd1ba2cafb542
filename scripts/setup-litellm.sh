#!/usr/bin/env bash
# Installs LiteLLM's proxy, an OpenAI-compatible server Trestle did not write, into a
# virtualenv of its own (.venv-litellm): tests/test_litellm_proxy.py runs the coding
# agent through it with the real `openai` client, its mock models and a forwarded
# scripted model (see docs/models.md). Its own virtualenv, because it is a server the
# tests start, not a library Trestle imports, and its pins are not Trestle's.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
VENV="${LITELLM_VENV:-.venv-litellm}"
VERSION="1.108.7"

if [[ -x "$VENV/bin/litellm" ]] && "$VENV/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('litellm') != '$VERSION')" 2>/dev/null; then
    echo "setup-litellm: LiteLLM $VERSION's proxy is in $VENV"
    exit 0
fi
echo "setup-litellm: installing LiteLLM $VERSION's proxy into $VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]==$VERSION"
echo "setup-litellm: LiteLLM $VERSION's proxy is in $VENV"
