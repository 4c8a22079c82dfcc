#!/usr/bin/env bash
# The speed issue's GPU target in one call (a few minutes on one H100/H200), bf16:
#   (a) the paper's exact model (experiment=sutskever2014: 4 x 1000 LSTMs, 160k/80k
#       vocabularies, batches of 128 sentences of 30 + 30 tokens): words/s, source + target;
#   (b) Transformer base (experiment=transformer_base_wmt14_en_de, 37k shared vocabulary)
#       with 25,000-token batches (1,000 sentences of 25 + 25): target tokens/s and MFU.
# Each twice: with the default loss chunk (512 target tokens per projection, sized for CPU
# caches) and with 4,096; last, (b) with `compile=true` (torch.compile, inductor). Random
# token ids; no data is read. The tables go to stdout; the machine and each run's JSON to
# OUTDIR (six files).
#
#   bash scripts/gpu_benchmark.sh [OUTDIR [ARGS...]]
#
# ARGS go to every run (e.g. --batch-size 2); DEVICE, PRECISION and STEPS (default cuda,
# bf16-mixed, 20) change those, so `DEVICE=cpu PRECISION=32-true STEPS=1 bash
# scripts/gpu_benchmark.sh /tmp/out --batch-size 2 --warmup 0` checks the script on a CPU.
#
# On a machine without hydra-core/omegaconf/antlr4 (pip cannot fetch), put their wheels in
# .whl/ first (README, "Speed": "On a GPU"); they are installed into a temporary directory.
set -euo pipefail
out=${1:-gpu_benchmark}
shift || true
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/seq2seq_site .whl/*.whl
  export PYTHONPATH=/tmp/seq2seq_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} | tee "$out/machine.txt"
extra=("$@")
failed=0
run() {  # name, then benchmark.py throughput arguments; a failed run does not stop the rest
  local name=$1
  shift
  python3 scripts/benchmark.py throughput --device "${DEVICE:-cuda}" \
    --precision "${PRECISION:-bf16-mixed}" --steps "${STEPS:-20}" --warmup 5 \
    --json "$out/$name.json" "$@" "${extra[@]}" || { echo "$name failed"; failed=1; }
}
run sutskever2014 --experiment sutskever2014
run transformer_base --experiment transformer_base_wmt14_en_de --src-len 25 --tgt-len 25
run sutskever2014_chunk4096 --experiment sutskever2014 loss_chunk=4096
run transformer_base_chunk4096 --experiment transformer_base_wmt14_en_de --src-len 25 \
  --tgt-len 25 loss_chunk=4096
run transformer_base_compile --experiment transformer_base_wmt14_en_de --src-len 25 \
  --tgt-len 25 compile=true
exit $failed
