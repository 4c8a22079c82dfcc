#!/usr/bin/env bash
# The speed issue's GPU target in one call (a few minutes on one H100/H200), bf16:
#   (a) the paper's exact model (experiment=sutskever2014: 4 x 1000 LSTMs, 160k/80k
#       vocabularies, batches of 128 sentences of 30 + 30 tokens): words/s, source + target;
#   (b) Transformer base (experiment=transformer_base_wmt14_en_de, 37k shared vocabulary)
#       with 25,000-token batches (1,000 sentences of 25 + 25): target tokens/s and MFU.
# Random token ids; no data is read. Markdown tables and JSON go to OUTDIR.
#
#   bash scripts/gpu_benchmark.sh [OUTDIR]
#
# On a machine without hydra-core/omegaconf/antlr4 (pip cannot fetch), put their wheels in
# .whl/ first (README, "Speed": "On a GPU"); they are installed into a temporary directory.
set -euo pipefail
out=${1:-gpu_benchmark}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/seq2seq_site .whl/*.whl
  export PYTHONPATH=/tmp/seq2seq_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.csv"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
  | tee "$out/versions.txt"
python3 scripts/benchmark.py throughput --experiment sutskever2014 --device cuda \
  --precision bf16-mixed --steps 20 --warmup 5 --json "$out/sutskever2014.json" \
  | tee "$out/sutskever2014.md"
python3 scripts/benchmark.py throughput --experiment transformer_base_wmt14_en_de \
  --device cuda --precision bf16-mixed --src-len 25 --tgt-len 25 --steps 20 --warmup 5 \
  --json "$out/transformer_base.json" | tee "$out/transformer_base.md"
