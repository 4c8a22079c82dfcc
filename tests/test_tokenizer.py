import torch

from seq2seq.data import tokenizer as tok
from seq2seq.data.tokenizer import BOS, EOS, PAD, UNK, tokenizer_from_state_dict
from tests.helpers import tokenizer_for

PAIRS = [
    (f"the {a} {b} is on the table number {i}", f"le {a} {b} est sur la table numéro {i}")
    for i, (a, b) in enumerate(
        [("red", "cat"), ("big", "dog"), ("small", "house"), ("old", "car")] * 25
    )
]


def test_special_ids_fixed_and_round_trip(tmp_path):
    t = tokenizer_for(PAIRS, tmp_path, vocab_size=48)
    for sp in (t.src, t.tgt):
        assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD, UNK, BOS, EOS)
    text = "le big cat est sur la table numéro 42"
    ids = t.encode_tgt([text])[0]
    assert t.decode_tgt([ids + [EOS, PAD]]) == [text]
    assert t.joint and t.src_vocab_size == t.tgt_vocab_size


def test_separate_vocabularies(tmp_path):
    t = tokenizer_for(PAIRS, tmp_path, vocab_size=40, joint=False)
    assert not t.joint
    assert t.src.id_to_piece(t.encode_src(["table"])[0][0]) != "le"


def test_cached_by_inputs_and_settings(tmp_path, monkeypatch):
    first = tokenizer_for(PAIRS, tmp_path, vocab_size=48)
    calls = []
    stub = lambda *a, **k: calls.append(a) or first.src_model  # noqa: E731
    monkeypatch.setattr(tok, "train_sentencepiece", stub)
    again = tokenizer_for(PAIRS, tmp_path, vocab_size=48)
    assert calls == [] and again.src_model == first.src_model
    tokenizer_for(PAIRS, tmp_path, vocab_size=61)  # other settings: trains anew
    assert len(calls) == 1


def test_state_dict_round_trip_is_plain_tensors(tmp_path):
    t = tokenizer_for(PAIRS, tmp_path, vocab_size=48)
    state = t.state_dict()
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.uint8 for v in state.values())
    path = tmp_path / "t.pt"
    torch.save(state, path)
    back = tokenizer_from_state_dict(torch.load(path, weights_only=True))
    assert back.src_model == t.src_model and back.encode_src(["red cat"]) == t.encode_src(
        ["red cat"]
    )
