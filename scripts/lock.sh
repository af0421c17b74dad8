#!/usr/bin/env bash
# Re-resolves the lock files from pyproject.toml with exact pins and hashes. Run after changing dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
compile() {  # compile OUT EXTRAS...
  local out=$1; shift
  local extras=()
  for e in "$@"; do extras+=(--extra "$e"); done
  uv pip compile -q pyproject.toml "${extras[@]}" --generate-hashes --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --no-header --custom-compile-command scripts/lock.sh -o "$out"
}
compile requirements/image-cpu.lock cpu
compile requirements/image-gpu.lock gpu
compile requirements/dev.lock dev
uv pip compile -q requirements/test-mlflow.in --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 --no-header --custom-compile-command scripts/lock.sh \
  -o requirements/test-mlflow.lock
