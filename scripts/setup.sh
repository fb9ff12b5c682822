#!/usr/bin/env bash
# Set up the checkout: .venv, torch 2.13.0 first (the local CPU wheel; a later torch would pull CUDA),
# then aql-agent in editable mode with its extras. Re-runs are quick: nothing is reinstalled unless
# pyproject.toml changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.aql-agent-installed
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setting up .venv (torch 2.13.0, then aql-agent[dev])..." >&2
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  echo "$want" > "$stamp"
fi
