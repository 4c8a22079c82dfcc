import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from seq2seq.errors import UserError
from seq2seq.optim import factories, halving, inverse_sqrt
from tests.helpers import CONF


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


def lrs_of(sched, opt, steps):
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])  # the rate the next update uses
        opt.step()
        sched.step()
    return out


def test_inverse_sqrt_is_the_papers_formula():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0, betas=(0.9, 0.98))
    lrs = lrs_of(inverse_sqrt(opt, warmup=4000, d_model=512), opt, 20000)
    for step in (1, 100, 3999, 4000, 4001, 10000, 20000):  # the paper counts updates from 1
        paper = 512**-0.5 * min(step**-0.5, step * 4000**-1.5)
        assert math.isclose(lrs[step - 1], paper, rel_tol=1e-9), step
    assert max(lrs) == lrs[3999] and math.isclose(max(lrs), 6.9877e-4, rel_tol=1e-4)


def test_inverse_sqrt_peak_form():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=5e-4)
    lrs = lrs_of(inverse_sqrt(opt, warmup=100), opt, 400)
    assert math.isclose(lrs[0], 5e-6) and math.isclose(lrs[99], 5e-4)
    assert math.isclose(lrs[399], 5e-4 * 0.5)  # four times the warm-up: half the peak
    with pytest.raises(ValueError, match="warmup=0"):
        inverse_sqrt(opt, warmup=0)


def test_choosing_an_optim_option_replaces_the_experiments_schedule():
    """The demo's schedule is an option of its own (optim=adam_halving), so another optim=
    choice replaces it whole: optim=sgd_halving is the paper's, not the demo's epochs."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        paper = compose("train", overrides=["optim=sgd_halving"]).optim.scheduler
        warmup = compose("train", overrides=["optim=adam_inverse_sqrt", "model=transformer"])
        mixed = compose("train", overrides=["experiment=multi30k_transformer", "optim=adam"])
        halving = compose("train", overrides=["experiment=multi30k_transformer",
                                              "optim=sgd_halving"])  # fmt: skip
        whole = compose("train", overrides=["optim.optimizer._partial_=false"])
    assert (paper.start_epoch, paper.every_epochs) == (5, 0.5)
    optimizer, scheduler = factories(warmup.optim)
    assert scheduler.func is inverse_sqrt and optimizer.func is torch.optim.Adam
    hint = "settings meant for another optim= option? `--cfg job` prints the composed config"
    with pytest.raises(UserError) as e:  # the experiment's warm-up settings, no schedule
        factories(mixed.optim)
    assert str(e.value) == (
        f"optim.scheduler: no _target_ (it holds {{'warmup': 400, 'd_model': None}}); {hint}"
    )
    with pytest.raises(UserError) as e:
        factories(halving.optim)
    assert str(e.value) == (
        f"optim.scheduler=seq2seq.optim.halving: got an unexpected keyword argument 'warmup'; "
        f"{hint}"
    )
    with pytest.raises(UserError) as e:  # built before the model's parameters exist
        factories(whole.optim)
    assert str(e.value) == "optim.optimizer=torch.optim.Adam: needs _partial_: true"
