import pytorch_lightning as pl
import torch

from seq2seq.checkpoint import load_checkpoint
from seq2seq.data.datamodule import TranslationDataModule
from seq2seq.data.sources import Demo
from seq2seq.module import TranslationModule
from seq2seq.translate import translate_texts


def test_checkpoint_round_trip_gives_identical_translations(tmp_path):
    dm = TranslationDataModule(Demo(num_train=300), vocab_size=200, batch_size=32)
    tokenizer = dm.prepare_tokenizer()
    model_config = {
        "_target_": "seq2seq.models.lstm.LSTMSeq2Seq",
        "src_vocab_size": tokenizer.src_vocab_size,
        "tgt_vocab_size": tokenizer.tgt_vocab_size,
        "num_layers": 2, "hidden_size": 32, "embed_dim": 16,
    }  # fmt: skip
    module = TranslationModule(
        model_config, tokenizer, {"reverse_source": True, "src": "en", "tgt": "fr"},
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-2),
    )  # fmt: skip
    trainer = pl.Trainer(max_steps=5, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)

    loaded = load_checkpoint(path)
    assert loaded.data["reverse_source"] is True
    texts = [s for s, _ in dm.source.pairs("test")[:40]]
    module.model.eval()
    before = translate_texts(module.model, tokenizer, texts, True, beam_size=3)
    after = translate_texts(loaded.model, loaded.tokenizer, texts, True, beam_size=3)
    assert before == after and any(before)
    for k, v in module.model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k])
