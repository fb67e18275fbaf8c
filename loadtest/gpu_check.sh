#!/usr/bin/env bash
# Issue 3's GPU check, prepared to run in one call on a lent GPU machine (device tool):
#
#   here:   python -m loadtest.device_bundle pack --store bench-out/store --model hh-transformer \
#               --data ../shared/data/hh-harmless/pairs.jsonl --out .device-bundle
#   there:  run(command="bash loadtest/gpu_check.sh", carry=[".device-bundle"], timeout_s=540)
#
# It installs the carried wheels, registers the carried model in a fresh store, and runs
# loadtest.bench_gpu (torch engine, bf16): the in-process ceiling, then HTTP under 32-item
# requests on servers of six, one (the baseline) and four worker processes. Results land in
# $OUT (the device tool's folder) or bench-out/gpu: machine.txt, bench_gpu.log, bench_gpu.json
# and each server size's log (server-w6.log, ...), six files of the tool's eight; if the run is
# cut short, bench_gpu.json holds what was measured so far ("partial": true).
# A dry run on a CPU machine, with the project's venv and nothing installed:
#   PY=.venv/bin/python INSTALL_WHEELS=0 DEVICE=cpu PRECISION=fp32 \
#       EXTRA="--quick --max-items 128 --load-processes 2 --workers 2,1" MAX_TOTAL_S=240 bash loadtest/gpu_check.sh
# It checks the path (wheels aside), not the figures: on 2 cores no 32-item request of the quick
# loads finishes in their 30 s, so their rows print "-" and FAIL.
set -euo pipefail
PY=${PY:-python3}
BUNDLE=${BUNDLE:-.device-bundle}
RESULTS=${OUT:-bench-out/gpu}
mkdir -p "$RESULTS"
if [ ! -f "$BUNDLE/model.json" ]; then
    echo "gpu_check: no $BUNDLE/model.json; make it with python -m loadtest.device_bundle pack" >&2
    exit 2
fi
if [ "${INSTALL_WHEELS:-1}" = 1 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/plaudit-site "$BUNDLE"/wheels/*.whl
    export PYTHONPATH=/tmp/plaudit-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import sys, torch, fastapi; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'fastapi', fastapi.__version__)"
    nproc
} 2>&1 | tee "$RESULTS/machine.txt"
STORE=$(mktemp -d)
REF=$("$PY" -m loadtest.device_bundle register --bundle "$BUNDLE" --store "$STORE" --name gpu-bench)
echo "registered $REF in $STORE"
# shellcheck disable=SC2086  # EXTRA holds several flags on purpose
"$PY" -m loadtest.bench_gpu --store "$STORE" --model "$REF" --data "$BUNDLE/data/items.jsonl" \
    --engine torch --device "${DEVICE:-cuda}" --precision "${PRECISION:-bf16}" \
    --max-total-s "${MAX_TOTAL_S:-420}" --out "$RESULTS/bench_gpu.json" ${EXTRA:-} 2>&1 | tee "$RESULTS/bench_gpu.log"
