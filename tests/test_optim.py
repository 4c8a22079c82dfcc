import torch

from seq2seq.optim import halving


def test_halving_after_five_epochs_every_half_epoch():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.7)
    sched = halving(opt, steps_per_epoch=10)
    lrs = []
    for _ in range(76):  # 7.5 epochs
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == lrs[49] == 0.7  # epochs 0-5: constant
    assert abs(lrs[50] - 0.35) < 1e-9 and abs(lrs[54] - 0.35) < 1e-9
    assert abs(lrs[55] - 0.175) < 1e-9
    assert abs(lrs[75] - 0.7 / 2**6) < 1e-9  # at 7.5 epochs: halved 6 times
