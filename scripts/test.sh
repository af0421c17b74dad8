#!/usr/bin/env bash
# The test command: prepares the host if needed (scripts/host-setup.sh), builds the image, lints, and runs
# every test (unit, in-process, and real containers on the local Docker engine). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
bash scripts/host-setup.sh
./build.sh >/dev/null
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check -q src tests bench
export TESTCONTAINERS_RYUK_DISABLED=true  # the reaper image lives on Docker Hub; our fixtures clean up
.venv/bin/pytest "$@"
echo "[test] total $(( $(date +%s) - started )) s" >&2
