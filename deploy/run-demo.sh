#!/usr/bin/env bash
# Set up the machine (deploy/setup.sh), then run the demo from the repo root:
#   ./deploy/run-demo.sh [crisisgw demo options...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash deploy/setup.sh --demo
echo "==> crisisgw demo $*"
exec .venv/bin/crisisgw demo "$@"
