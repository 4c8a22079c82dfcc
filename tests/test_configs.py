"""Every config in conf/ composes, and instantiates where that is cheap."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from seq2seq.module import TranslationModule  # noqa: F401  (import check)
from tests.helpers import CONF


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def compose_train(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_compose_and_build(experiment):
    cfg = compose_train(f"experiment={experiment}")
    with torch.device("meta"):
        model = instantiate(cfg.model, src_vocab_size=100, tgt_vocab_size=100)
    optimizer = instantiate(cfg.optim.optimizer)(model.parameters())
    if cfg.optim.scheduler:
        instantiate(cfg.optim.scheduler)(optimizer, steps_per_epoch=10)
    assert cfg.trainer.gradient_clip_val == cfg.optim.grad_clip


@pytest.mark.parametrize("group", ["data", "model", "optim", "trainer", "decode"])
def test_every_group_option_composes(group):
    for option in options(group):
        overrides = [f"{group}={option}"]
        if option == "text_files":
            overrides.append("data.dir=somewhere")
        if option == "hf":
            overrides.append("data.path=parquet")
        cfg = compose_train(*overrides)
        assert cfg[group] is not None
        if group == "trainer":
            assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
        if group == "data":
            assert cfg.data.source._target_.startswith("seq2seq.data.sources.")


def test_paper_values_in_sutskever2014():
    cfg = compose_train("experiment=sutskever2014")
    assert (cfg.model.num_layers, cfg.model.hidden_size, cfg.model.embed_dim) == (4, 1000, 1000)
    assert cfg.model.init_range == 0.08 and cfg.data.reverse_source and cfg.data.batch_size == 128
    assert cfg.optim.optimizer.lr == 0.7 and cfg.optim.optimizer.momentum == 0.0
    assert cfg.optim.grad_clip == 5.0 and cfg.decode.beam_size == 12
    assert not compose_train("experiment=sutskever2014_forward").data.reverse_source


def test_paper_values_in_transformer_experiments():
    base = compose_train("experiment=transformer_base_wmt14_en_de")
    m = base.model
    assert (m.num_encoder_layers, m.num_decoder_layers, m.d_model, m.nhead) == (6, 6, 512, 8)
    assert (m.dim_feedforward, m.dropout, m.norm_first) == (2048, 0.1, False)
    assert m.share_embeddings is True
    assert base.optim.optimizer.betas == [0.9, 0.98] and base.optim.optimizer.eps == 1e-9
    assert base.optim.scheduler.warmup == 4000 and base.optim.scheduler.d_model == 512
    assert base.optim.label_smoothing == 0.1 and base.data.vocab_size == 37000
    tokens = base.data.max_tokens * base.trainer.accumulate_grad_batches
    assert tokens == 25000 and base.trainer.max_steps == 100000
    d = base.decode
    assert (d.beam_size, d.length_penalty, d.alpha) == (4, "gnmt", 0.6)
    assert (d.max_len_a, d.max_len_b) == (50, 1.0)
    assert base.checkpoint.keep_last == 5
    big = compose_train("experiment=transformer_big_wmt14_en_de")
    assert (big.model.d_model, big.model.nhead, big.model.dim_feedforward) == (1024, 16, 4096)
    assert big.model.dropout == 0.3 and big.trainer.max_steps == 300000
    assert big.checkpoint.keep_last == 20 and big.optim.scheduler.d_model == 1024


def test_demo_presets_follow_the_model():
    assert compose_train().model.hidden_size == 256  # the default run: 2x256 LSTM
    small = compose_train("model=transformer").model
    assert (small.d_model, small.num_encoder_layers, small.norm_first) == (256, 2, True)
    assert compose_train("model=transformer", "model.d_model=64").model.d_model == 64


@pytest.mark.parametrize("name", ["evaluate", "translate", "decode_speed", "average"])
def test_entry_point_configs_compose(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        if name == "average":
            assert compose(name, overrides=["run=x"]).last == 5
            return
        cfg = compose(name, overrides=["ckpt=x.ckpt", "decode=beam"])
    assert cfg.decode.beam_size == 5


def test_decoding_batches_match_the_library_default():
    """evaluate/translate (conf/decode) and library callers (the speed benchmark) decode in the
    same batches."""
    from seq2seq.translate import MAX_TOKENS

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for option in sorted(p.stem for p in (CONF / "decode").glob("*.yaml")):
            assert compose("evaluate", [f"decode={option}"]).decode.max_tokens == MAX_TOKENS
