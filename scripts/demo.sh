#!/usr/bin/env bash
# Sets up .venv if needed, generates the toy VOC dataset, runs the whole pipeline on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python run_pipeline.py "$@"
