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


@pytest.mark.parametrize("name", ["evaluate", "translate"])
def test_entry_point_configs_compose(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=["ckpt=x.ckpt", "decode=beam"])
    assert cfg.decode.beam_size == 5
