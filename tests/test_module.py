import torch
import torch.nn.functional as F

from seq2seq.data.tokenizer import PAD
from seq2seq.module import token_losses


def test_label_smoothing_as_the_paper_with_padding_excluded():
    """Vaswani et al. §5.4 (Szegedy et al. 2016): the target distribution puts 1 - eps on the
    reference and eps uniformly over the vocabulary; padded positions contribute nothing."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 17, generator=g)
    tgt = torch.randint(4, 17, (3, 5), generator=g)
    tgt[0, 3:] = PAD
    tgt[2, 1:] = PAD
    loss, nll = token_losses(logits, tgt, label_smoothing=0.1)
    flat, gold = logits.view(-1, 17), tgt.view(-1)
    expected = F.cross_entropy(flat, gold, ignore_index=PAD, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, F.cross_entropy(flat, gold, ignore_index=PAD, reduction="sum"))
    # the same sum by hand: (1 - eps) * NLL + eps * mean over the vocabulary of -log p
    keep = gold != PAD
    lp = flat.log_softmax(-1)[keep]
    by_hand = (0.9 * -lp.gather(1, gold[keep, None]).squeeze(1) + 0.1 * -lp.mean(-1)).sum()
    torch.testing.assert_close(loss, by_hand)
    plain, plain_nll = token_losses(logits, tgt)
    assert torch.equal(plain, plain_nll) and torch.equal(plain, nll)
