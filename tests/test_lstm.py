import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from seq2seq.data.tokenizer import BOS, PAD
from seq2seq.models.interface import Seq2Seq, select
from seq2seq.module import token_losses
from tests.helpers import CONF, random_batch, tiny_lstm


def test_implements_protocol_with_batch_first_state():
    model = tiny_lstm(layers=3, hidden=16)
    assert isinstance(model, Seq2Seq)
    src, lens = random_batch()
    state = model.encode(src, lens)
    assert state["h"].shape == state["c"].shape == (4, 3, 16)  # (B, L, H): every layer


def test_every_encoder_layer_seeds_its_decoder_layer():
    model = tiny_lstm(layers=2)
    src, lens = random_batch()
    state = model.encode(src, lens)
    prev = torch.full((4,), BOS)
    base, _ = model.decode_step(prev, state)
    for layer in range(2):
        changed = {k: v.clone() for k, v in state.items()}
        changed["c"][:, layer] += 1.0
        out, _ = model.decode_step(prev, changed)
        assert not torch.allclose(out, base)


def test_step_by_step_decoding_reproduces_teacher_forcing():
    model = tiny_lstm()
    src, lens = random_batch()
    tgt_in = torch.randint(4, 13, (4, 6))
    tgt_in[:, 0] = BOS
    forced = model(src, lens, tgt_in).log_softmax(-1)
    state = model.encode(src, lens)
    for t in range(tgt_in.size(1)):
        logp, state = model.decode_step(tgt_in[:, t], state)
        torch.testing.assert_close(logp, forced[:, t], rtol=1e-5, atol=1e-5)


def test_select_reorders_state_rows():
    model = tiny_lstm()
    src, lens = random_batch()
    state = model.encode(src, lens)
    picked = select(state, torch.tensor([2, 2, 0]))
    torch.testing.assert_close(picked["h"][1], state["h"][2])
    torch.testing.assert_close(picked["c"][2], state["c"][0])


def test_padding_never_changes_a_sentence_loss():
    model = tiny_lstm()
    src, lens = random_batch(lens=(5, 2, 7))
    tgt_lens = [4, 6, 2]
    tgt = torch.full((3, 7), PAD)
    for i, n in enumerate(tgt_lens):
        tgt[i, :n] = torch.randint(4, 13, (n,))
    tgt_in = torch.cat([torch.full((3, 1), BOS), tgt[:, :-1]], 1).masked_fill(tgt == PAD, PAD)
    logits = model(src, lens, tgt_in)
    for i, n in enumerate(tgt_lens):
        alone = model(src[i : i + 1, : lens[i]], lens[i : i + 1], tgt_in[i : i + 1, :n])
        batched_loss, _ = token_losses(logits[i : i + 1], tgt[i : i + 1])
        alone_loss, _ = token_losses(alone, tgt[i : i + 1, :n])
        torch.testing.assert_close(batched_loss, alone_loss, rtol=1e-5, atol=1e-5)


def test_label_smoothing_matches_torch():
    logits = torch.randn(2, 5, 9)
    tgt = torch.randint(1, 9, (2, 5))
    tgt[1, 3:] = PAD
    loss, nll = token_losses(logits, tgt, label_smoothing=0.1)
    ref = F.cross_entropy(logits.view(-1, 9), tgt.view(-1), ignore_index=PAD,
                          label_smoothing=0.1, reduction="sum")  # fmt: skip
    torch.testing.assert_close(loss, ref)
    ref_nll = F.cross_entropy(logits.view(-1, 9), tgt.view(-1), ignore_index=PAD, reduction="sum")
    torch.testing.assert_close(nll, ref_nll)


def test_sutskever2014_has_384M_parameters():
    # §3.4: "The resulting LSTM has 384M parameters" with 160k source / 80k target words.
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=sutskever2014"])
    with torch.device("meta"):
        model = instantiate(cfg.model, src_vocab_size=160_000, tgt_vocab_size=80_000)
    n = sum(p.numel() for p in model.parameters())
    assert 383e6 < n < 385e6, n
