#!/usr/bin/env bash
# The main job, locally: prepares the host if needed, builds the image, and runs it as a 3-host
# SageMaker-style job whose hosts form one Ray cluster and each run a task. Arguments go to `smray cluster`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/host-setup.sh
./build.sh >/dev/null
if (($#)); then exec .venv/bin/smray cluster "$@"; fi
exec .venv/bin/smray cluster --hosts 3 cluster-check
