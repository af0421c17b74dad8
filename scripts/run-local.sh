#!/usr/bin/env bash
# The main job, locally: prepares the host if needed, builds the image, and runs the workflow's steps on
# the reference table (data/house_pricing.csv, or the CSV/Parquet folder given as $1) as SageMaker-style
# jobs of real containers: ingest and preprocess on 2 hosts, training (SMRAY_TRAIN_HOSTS hosts, default 1:
# plain XGBoost; 2 or more: Ray Train across the containers), evaluation.
# Everything a run writes goes under runs/workflow-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/host-setup.sh
./build.sh >/dev/null
input=${1:-data/house_pricing.csv}
work=$(pwd)/runs/workflow-$(date +%Y%m%d-%H%M%S)
mkdir -p "$work/raw"
if [[ -d "$input" ]]; then cp -r "$input"/. "$work/raw/"; else cp "$input" "$work/raw/"; fi

step() {  # step HOSTS KIND MODE ARGS...
  local hosts=$1 kind=$2; shift 2
  printf '\n=== %s (%s host(s), %s job) ===\n' "$1" "$hosts" "$kind"
  .venv/bin/smray cluster --hosts "$hosts" --kind "$kind" --mount "$work:/data" --runs-dir "$work/jobs" "$@"
}
started=$(date +%s)
step 2 processing ingest --input /data/raw --store /data/store --quarantine /data/quarantine --report /data/ingest.json
step 2 processing preprocess --store /data/store --output /data/splits --transform-output /data/channels/transform \
  --report /data/preprocess.json
for split in train validation; do cp -r "$work/splits/$split" "$work/channels/$split"; done
step "${SMRAY_TRAIN_HOSTS:-1}" training train --channels /data/channels --model-dir /data/model --checkpoint-dir /data/checkpoints
step 1 processing evaluate --model /data/model --test /data/splits/test --output /data/evaluation

printf '\n=== summary (%s s) ===\n' "$(( $(date +%s) - started ))"
.venv/bin/python - "$work" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
ingest = json.loads((work / "ingest.json").read_text())
pre = json.loads((work / "preprocess.json").read_text())
meta = json.loads((work / "model" / "metadata.json").read_text())
m = json.loads((work / "evaluation" / "evaluation.json").read_text())["regression_metrics"]
print(f"ingest      {ingest['rows_read']:,} rows, {ingest['quarantined']} quarantined, {ingest['written']:,} written")
print(f"preprocess  " + ", ".join(f"{k} {v:,}" for k, v in pre["splits"].items()))
print(f"train       {meta['engine']}, {meta['rounds']} rounds, validation rmse {meta['validation_rmse']:,.0f}")
print(f"evaluate    test rmse {m['rmse']['value']:,.0f} (± {m['rmse']['standard_deviation']:,.0f}), r2 {m['r2']['value']:.4f}")
print(f"report      {work / 'evaluation' / 'report.html'}")
PY
