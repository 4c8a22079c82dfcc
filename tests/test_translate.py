import pytest
import torch

from seq2seq.data.datamodule import TranslationDataModule
from seq2seq.data.sources import Demo
from seq2seq.data.tokenizer import EOS
from seq2seq.errors import UserError
from seq2seq.models.lstm import LSTMSeq2Seq
from seq2seq.models.transformer import TransformerSeq2Seq
from seq2seq.translate import parts_for, translate_nbest


@pytest.fixture(scope="module")
def setup():
    """Random models over a real demo tokenizer, with a bias against ending at once."""
    dm = TranslationDataModule(Demo(num_train=300), vocab_size=200, batch_size=16)
    tokenizer = dm.prepare_tokenizer()
    V = (tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    torch.manual_seed(0)
    models = [LSTMSeq2Seq(*V, 2, 32, 16).eval(), TransformerSeq2Seq(*V, 1, 1, 32, 2, 64).eval()]
    with torch.no_grad():
        models[0].out.bias[EOS] = -3.0
    texts = [s for s, _ in dm.source.pairs("test")[:11]] + [""]
    return models, tokenizer, texts


@pytest.mark.parametrize("beam, nbest", [(1, 1), (3, 2)])
def test_batches_searched_in_parts_give_the_batchs_translations(setup, beam, nbest):
    models, tokenizer, texts = setup
    threads = torch.get_num_threads()
    for model in models:
        # 40 tokens x beams a batch: batches of a few sentences, some split in more parts than
        # they have sentences
        runs = [translate_nbest(model, tokenizer, texts, True, 40 * beam, nbest, parts,
                                beam_size=beam, max_len_a=4, max_len_b=0.5)  # fmt: skip
                for parts in (1, 2, 3, "auto")]  # fmt: skip
        assert torch.get_num_threads() == threads  # restored after each
        one = runs[0]
        assert one[-1] == [] and all(len(t) == nbest for t in one[:-1])
        for other in runs[1:]:
            assert [[t.text for t in s] for s in other] == [[t.text for t in s] for s in one]
            for a, b in zip(sum(other, []), sum(one, [])):
                assert a.score == pytest.approx(b.score, abs=1e-4)


def test_parts_default_to_two_on_a_cpu_with_two_threads(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert parts_for("auto", torch.device("cpu")) == 2
    assert parts_for("auto", torch.device("cuda")) == 1
    assert parts_for(3, torch.device("cpu")) == 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert parts_for("auto", torch.device("cpu")) == 1
    for bad in (0, "two", 1.5, True):
        with pytest.raises(UserError, match=r"^decode.inter_threads=.*: expected auto or an int"):
            parts_for(bad, torch.device("cpu"))
