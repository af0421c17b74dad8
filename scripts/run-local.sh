#!/usr/bin/env bash
# The main job, locally: prepares the host if needed (Docker, base image, .venv), builds the image, then
# runs `smray run local`: the SageMaker Pipeline in SageMaker local mode on this machine's Docker engine
# (ingest -> preprocess -> train with tuning -> evaluate -> gate -> register), then approve -> deploy ->
# invoke, a summary and an HTML report. Arguments go to `smray run local` (see `--help`), e.g.
#   scripts/run-local.sh --input my.csv      scripts/run-local.sh --generate 100000 --threshold 20000
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/host-setup.sh
./build.sh >/dev/null
exec .venv/bin/smray run local "$@"
