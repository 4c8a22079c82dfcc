import math

import pytest
import torch

from seq2seq.data.batching import collate, encode_sources
from seq2seq.data.datamodule import TranslationDataModule
from seq2seq.data.sources import Demo
from seq2seq.data.tokenizer import BOS, EOS
from seq2seq.errors import UserError
from seq2seq.metrics import bleu_by_length, bleu_by_rarity, corpus_bleu, word_ranks
from seq2seq.models.lstm import LSTMSeq2Seq
from seq2seq.score import NBestEntry, read_nbest, rescore, score_lines, score_pairs
from seq2seq.search import beam_search
from seq2seq.translate import translate_nbest, translate_texts


@pytest.fixture(scope="module")
def setup():
    """A random LSTM over a real demo tokenizer, with a bias against ending at once."""
    dm = TranslationDataModule(Demo(num_train=300), vocab_size=200, batch_size=16)
    tokenizer = dm.prepare_tokenizer()
    torch.manual_seed(0)
    model = LSTMSeq2Seq(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, 1, 32, 16).eval()
    with torch.no_grad():
        model.out.bias[EOS] = -3.0
    texts = [s for s, _ in dm.source.pairs("test")[:30]]
    return model, tokenizer, texts


def test_score_is_the_sum_of_teacher_forced_log_probs(setup):
    model, tokenizer, texts = setup
    tgts = ["Le musée ouvre lundi.", "", "Bonjour !"]
    scores = score_pairs(model, tokenizer, texts[:3], tgts, reverse_source=True)
    for src, tgt, score in zip(texts, tgts, scores):
        s = torch.tensor([tokenizer.encode_src([src])[0][::-1] + [EOS]])
        t = tokenizer.encode_tgt([tgt])[0] + [EOS]
        with torch.no_grad():
            lp = model(s, torch.tensor([s.size(1)]), torch.tensor([[BOS] + t[:-1]])).log_softmax(-1)
        assert math.isclose(score, float(lp[0, torch.arange(len(t)), t].sum()), rel_tol=1e-5)


def test_search_log_probs_agree_with_forced_decoding(setup):
    model, tokenizer, texts = setup
    data = encode_sources(tokenizer, texts[:8], reverse=True)
    batch = collate([data[i] for i in range(8)])
    checked = 0
    for src, hyps in zip(texts, beam_search(model, batch["src"], batch["src_lens"], 4, nbest=3)):
        outputs = tokenizer.decode_tgt([h.tokens for h in hyps])
        forced = score_pairs(model, tokenizer, [src] * len(hyps), outputs, reverse_source=True)
        for h, text, f in zip(hyps, outputs, forced):
            if tokenizer.encode_tgt([text])[0] == h.tokens:  # the text round-trips to the ids
                assert math.isclose(h.logprob, f, rel_tol=1e-4, abs_tol=1e-4)
                checked += 1
    assert checked >= 12
    nbest = translate_nbest(model, tokenizer, texts[:8], True, nbest=3, beam_size=4)
    for translations in nbest:
        scores = [t.score for t in translations]
        assert scores == sorted(scores, reverse=True) and len(translations) == 3


def test_memory_budget_splits_batches_with_identical_output(setup):
    model, tokenizer, texts = setup
    one = translate_texts(model, tokenizer, texts, True, max_tokens=100_000, beam_size=3)
    many = translate_texts(model, tokenizer, texts, True, max_tokens=60, beam_size=3)
    assert one == many and any(one)
    with pytest.raises(UserError, match="decode.nbest=4 needs decode.beam_size >= 4"):
        translate_nbest(model, tokenizer, texts, True, nbest=4, beam_size=2)


def test_rescoring():
    entries = [NBestEntry(0, "a", "", -1.0), NBestEntry(0, "b", "", -2.0),
               NBestEntry(1, "c", "", -5.0), NBestEntry(1, "d", "", -0.5)]  # fmt: skip
    model = [-9.0, -1.0, -2.0, -3.0]
    by_model = rescore(entries, model, weight=1.0)
    assert (by_model[0].hyp, by_model[1].hyp) == ("b", "c")  # ranking by model log-prob alone
    given = rescore(entries, model, weight=0.0)
    assert (given[0].hyp, given[1].hyp) == ("a", "d")
    even = rescore(entries, model, weight=0.5)  # 0: a -5 vs b -1.5; 1: c -3.5 vs d -1.75
    assert (even[0].hyp, even[1].hyp) == ("b", "d")


def test_score_lines_and_nbest_files(setup, tmp_path):
    model, tokenizer, texts = setup
    (tmp_path / "src").write_text("\n".join(texts[:2]) + "\n")
    (tmp_path / "tgt").write_text("Bonjour.\nMerci.\n")
    lines = score_lines(model, tokenizer, True, str(tmp_path / "src"), tgt=str(tmp_path / "tgt"))
    assert len(lines) == 2 and all(float(x) < 0 for x in lines)
    nbest = tmp_path / "nbest"
    nbest.write_text("0 ||| Bonjour. ||| lm= -3 ||| -1.5\n0 ||| Merci. ||| lm= -2 ||| -9\n"
                     "1 ||| Merci. ||| lm= -1 ||| -2.0\n")  # fmt: skip
    scored = score_lines(model, tokenizer, True, str(tmp_path / "src"), nbest=str(nbest))
    assert scored[0].startswith("0 ||| Bonjour. ||| lm= -3 seq2seq= -") and len(scored) == 3
    best = score_lines(model, tokenizer, True, str(tmp_path / "src"), nbest=str(nbest),
                       rescore_weight=0.0)  # fmt: skip
    assert best == ["Bonjour.", "Merci."]
    nbest.write_text("7 ||| x ||| f= 1 ||| -1\n")
    with pytest.raises(UserError, match="id 7 but .* has 2 lines"):
        score_lines(model, tokenizer, True, str(tmp_path / "src"), nbest=str(nbest))
    nbest.write_text("0 ||| only two fields\n")
    with pytest.raises(UserError, match=r"nbest:1: expected 'id \|\|\| hypothesis"):
        read_nbest(nbest)
    with pytest.raises(UserError, match="give tgt=FILE"):
        score_lines(model, tokenizer, True, str(tmp_path / "src"))


def test_bleu_buckets_partition_the_corpus():
    srcs = [" ".join(["w"] * n) for n in (3, 9, 9, 14, 20, 40, 5, 30)]
    refs = ["the cat sat on the mat", "a b c d", "x y z", "one two three four five"] * 2
    hyps = ["the cat sat on a mat", "a b c d", "x y", "one two three five"] * 2
    rows = bleu_by_length(srcs, hyps, refs)
    assert sum(r["sentences"] for r in rows) == len(srcs)
    assert [r["from"] for r in rows] == [0, 8, 12, 17, 28, 35]
    whole = bleu_by_length(srcs, hyps, refs, edges=[0])
    assert whole[0]["bleu"] == pytest.approx(corpus_bleu(hyps, refs)[0])
    ranks = word_ranks(["w w w v", "v u"])
    assert ranks == {"w": 1, "v": 2, "u": 3}
    rarity = bleu_by_rarity(["w w", "v", "u", "z z"], hyps[:4], refs[:4], ranks, buckets=4)
    assert [r["sentences"] for r in rarity] == [1, 1, 1, 1]  # z unseen: ranks last
