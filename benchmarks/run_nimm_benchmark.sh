#!/usr/bin/env bash
# The search benchmark reported in docs/BENCHMARKS.md, section "Search benchmark".
#
#   benchmarks/run_nimm_benchmark.sh [OUT] [extra nimm bench options...]
#
# OUT defaults to bench-out/ (do not commit it). The benchmark is resumable: running the
# same command again keeps finished runs, resumes interrupted ones and rewrites
# OUT/results.md, OUT/results.csv and the plots. Point NIMM_DATA_DIR at a copy of the task
# data (e.g. ../shared/data) to skip downloads. Nine tasks x four policies x three seeds x
# twelve evaluations, offline proposer (no LLM, no network, no API key); the three
# lung-cancer tasks use 200 simulated patients per split instead of the default 1000 to
# fit a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench-out}"
shift || true
export OMP_NUM_THREADS=1
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" -m nimm_jupyter.cli bench \
  --tasks lung_cancer,lung_cancer_chemo,lung_cancer_chemo_radio,influenza_usa,hea_fcc_rt,hea_bcc_temp,covid_bogota_synthetic,covid_medellin_synthetic,mrsa_virginia_synthetic \
  --policies nimmgen,greedy,evolution,sampling \
  --seeds 3 --budget 12 --proposer offline --workers 2 --device cpu \
  --task-option lung_cancer:n_patients=200 \
  --task-option lung_cancer_chemo:n_patients=200 \
  --task-option lung_cancer_chemo_radio:n_patients=200 \
  --out "$OUT" "$@"
