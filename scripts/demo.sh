#!/usr/bin/env bash
# The README's first command: set everything up, then run the demo end to end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
export OMP_WAIT_POLICY=PASSIVE SDL_VIDEODRIVER=dummy MUJOCO_GL="${MUJOCO_GL:-egl}"
exec .venv/bin/aql demo "$@"
