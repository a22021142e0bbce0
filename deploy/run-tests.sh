#!/usr/bin/env bash
# Set up the machine (deploy/setup.sh), then run pytest from the repo root.
# Arguments go to pytest unchanged, and so does its exit code, e.g.
#   ./deploy/run-tests.sh -m "not broker" -x tests/unit
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash deploy/setup.sh
echo "==> pytest $*"
exec .venv/bin/python -m pytest "$@"
