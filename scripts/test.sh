#!/usr/bin/env bash
# The README's second command: set everything up, then run the test suite (arguments go to pytest).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
export OMP_WAIT_POLICY=PASSIVE SDL_VIDEODRIVER=dummy MUJOCO_GL="${MUJOCO_GL:-egl}"
# Two workers, each taking one test file at a time (module fixtures are built once; tests/conftest.py groups
# the files that start a local Ray): subprocess, bridge and Ray waits overlap. AQL_TEST_WORKERS=0: one process.
.venv/bin/ruff check --quiet .
exec .venv/bin/python -m pytest -n "${AQL_TEST_WORKERS:-2}" --dist loadgroup "$@"
