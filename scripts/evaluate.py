"""Score a checkpoint: `python scripts/evaluate.py ckpt=PATH [split=test] [decode=beam]`."""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from seq2seq.cli import check_number_overrides, run, user_errors
from seq2seq.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_number_overrides(cfg)
        r = evaluate(cfg, HydraConfig.get().runtime.output_dir)
    print(
        f"{r['split']}: BLEU {r['bleu']:.2f} chrF {r['chrf']:.2f} TER {r['ter']:.2f} | "
        f"{r['sentences']} sentences, "
        f"beam {r['decode']['beam_size']}, {r['decode_seconds']:.1f}s | {r['hyp_path']}"
    )
    print(f"BLEU signature: {r['bleu_signature']}")
    if "tokenised_bleu" in r:
        print(f"tokenised BLEU {r['tokenised_bleu']:.2f} ({r['tokenised_bleu_note']})")


if __name__ == "__main__":
    run(main)
