"""Parameter groups, optimizers and the per-step learning-rate schedule."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from cnnspec.spec.model import OptimizerSpec, ScheduleSpec
from cnnspec.training.optim import (
    ONECYCLE_DIV,
    ONECYCLE_FINAL_DIV,
    Replan,
    Schedule,
    make_optimizer,
    param_groups,
)


def _schedule(steps_per_epoch: int = 10, epochs: int = 10, lr: float = 0.1, **kw: object) -> Schedule:
    return Schedule(ScheduleSpec.model_validate(kw), lr, steps_per_epoch, epochs)


def test_linear_warmup_then_constant() -> None:
    s = _schedule(warmup_epochs=2)
    assert s.warmup_steps == 20
    assert s.factor(0) == pytest.approx(1 / 20)
    assert s.factor(9) == pytest.approx(10 / 20)
    assert s.factor(19) == pytest.approx(1.0)
    assert s.factor(50) == 1.0


def test_cosine_runs_from_peak_to_min_lr_after_warmup() -> None:
    s = _schedule(name="cosine", warmup_epochs=2, min_lr=0.001)
    assert s.factor(20) == pytest.approx(1.0)
    assert s.factor(60) == pytest.approx(0.5 * (1 + 0.01), rel=1e-6)  # halfway through the 80 cosine steps
    assert s.factor(99) == pytest.approx(0.01, abs=1e-3)
    assert all(s.factor(i) >= s.factor(i + 1) for i in range(20, 99))


def test_step_and_multistep() -> None:
    s = _schedule(name="step", step_size=3, gamma=0.5)
    assert [s.factor(e * 10) for e in (0, 2, 3, 6, 9)] == [1.0, 1.0, 0.5, 0.25, 0.125]
    m = _schedule(name="multistep", milestones=[2, 5], gamma=0.1)
    assert m.factor(19) == 1.0
    assert m.factor(20) == pytest.approx(0.1)
    assert m.factor(55) == pytest.approx(0.01)


def test_onecycle_rises_to_the_peak_then_anneals() -> None:
    s = _schedule(name="onecycle", pct_start=0.3)
    assert s.factor(0) == pytest.approx(1 / ONECYCLE_DIV)
    peak = max(range(100), key=s.factor)
    assert abs(peak - 30) <= 1 and s.factor(30) == pytest.approx(1.0, abs=1e-3)
    assert s.factor(100) == pytest.approx(1 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV))


def test_onecycle_matches_torch_one_cycle_lr_without_momentum_cycling() -> None:
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=101, pct_start=0.3, cycle_momentum=False)
    ours = _schedule(steps_per_epoch=101, epochs=1, name="onecycle", pct_start=0.3)
    for step in range(0, 101, 10):
        # torch spreads the cycle over total_steps − 1 intervals; ours over total_steps, so compare with that shift.
        assert ours.factor(step) * 0.1 == pytest.approx(_torch_lr(ref, opt, step * 100 / 101), rel=0.05, abs=1e-6), step


def _torch_lr(ref: torch.optim.lr_scheduler.OneCycleLR, opt: torch.optim.Optimizer, step: float) -> float:
    # Evaluate torch's formula at a fractional step by interpolating its neighbours.
    lo, hi = math.floor(step), math.ceil(step)
    values = []
    for k in (lo, hi):
        ref.last_epoch = k
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # get_lr() outside step() warns; here it is the formula we want
            values.append(float(ref.get_lr()[0]))  # type: ignore[no-untyped-call]
    return values[0] + (values[1] - values[0]) * (step - lo)


# --- a resume that changes train.epochs (Replan) -------------------------------------------------------

CURVES = ("constant", "cosine", "step", "multistep", "onecycle")
KINDS = {"step_size": 2, "milestones": [1, 3], "gamma": 0.5, "min_lr": 0.001, "warmup_epochs": 0.5}


def _plain(name: str, epochs: int, **kw: object) -> Schedule:
    return Schedule(ScheduleSpec.model_validate({"name": name, **KINDS, **kw}), 0.1, 10, epochs)


def _extended(name: str, first: int, at: int, epochs: int, mode: str = "continue", **kw: object) -> Schedule:
    spec = ScheduleSpec.model_validate({"name": name, **KINDS, **kw, "extend": mode})
    return Schedule(spec, 0.1, 10, first, (Replan(at, epochs, spec.extend),))


@pytest.mark.parametrize("name", CURVES)
@pytest.mark.parametrize("at", [3, 10, 25, 40])  # in warm-up, just after it, mid-curve, a finished 4-epoch run
def test_continue_keeps_the_steps_taken_and_goes_on_without_a_jump(name: str, at: int) -> None:
    old, new = _plain(name, 4), _extended(name, 4, at, 8)
    assert [new.factor(s) for s in range(at)] == [old.factor(s) for s in range(at)]
    if name in ("constant", "step", "multistep"):  # they do not depend on the length: the 8-epoch plan itself
        longer = _plain(name, 8)
        assert [new.factor(s) for s in range(80)] == [longer.factor(s) for s in range(80)]
    else:
        # No jump: from the last step to the next, the rate changes by no more than the first plan's own
        # change there (a warm-up or a onecycle rise climbs fast), give or take 10%.
        ratio, own = new.factor(at) / old.factor(at - 1), old.factor(at) / old.factor(at - 1)
        assert min(1.0, own) / 1.1 <= ratio <= max(1.0, own) * 1.1
        floor = 0.01 if name == "cosine" else 1 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
        assert floor <= new.factor(79) <= floor + 0.01  # at the floor by the new end


def test_the_warm_up_is_not_planned_again() -> None:
    """A 1-epoch run of warmup_epochs 5 warmed up all of it; extended, it goes on from the peak."""
    new = _extended("cosine", 1, 10, 6, warmup_epochs=5)
    assert new.warmup_steps == 10 and new.factor(9) == 1.0 and new.factor(10) == 1.0  # afresh: 11/50
    mid = _extended("cosine", 1, 5, 6, warmup_epochs=5)  # stopped inside that warm-up: it ends at step 10
    assert [mid.factor(s) for s in range(10)] == [(s + 1) / 10 for s in range(10)]


@pytest.mark.parametrize("name", ["cosine", "onecycle", "step"])
def test_restart_runs_the_curve_again_over_the_steps_left(name: str) -> None:
    new = _extended(name, 4, 40, 8, "restart", warmup_epochs=0)
    fresh = _plain(name, 4, warmup_epochs=0)
    assert [new.factor(40 + s) for s in range(40)] == pytest.approx([fresh.factor(s) for s in range(40)], rel=1e-12)


def test_apply_sets_every_group_with_its_scale() -> None:
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [a], "lr_scale": 1.0}, {"params": [b], "lr_scale": 0.1}], lr=1.0)
    s = _schedule(lr=0.2)
    assert s.apply(opt, 3) == pytest.approx(0.2)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.2, 0.02])


def test_no_decay_on_norms_and_biases_and_a_backbone_group() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    spec = OptimizerSpec(name="adamw", lr=0.01, weight_decay=0.05, decay_norms_and_biases=False)
    groups = param_groups(model, spec, backbone=[model[0]], lr_scale=0.1)
    by_key = {(g["lr_scale"], g["weight_decay"]): g["params"] for g in groups}
    assert by_key[(0.1, 0.05)] == [model[0].weight]
    assert by_key[(0.1, 0.0)] == [model[0].bias]
    assert by_key[(1.0, 0.05)] == [model[3].weight]
    assert by_key[(1.0, 0.0)] == [model[1].weight, model[1].bias, model[3].bias]
    opt = make_optimizer(groups, spec)
    assert isinstance(opt, torch.optim.AdamW)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_decay_everywhere_by_default_and_sgd_options() -> None:
    model = nn.Linear(3, 2)
    spec = OptimizerSpec(name="sgd", lr=0.1, momentum=0.8, nesterov=True, weight_decay=1e-4)
    groups = param_groups(model, spec)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 1e-4
    opt = make_optimizer(groups, spec)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["nesterov"] is True and opt.param_groups[0]["momentum"] == 0.8
    assert isinstance(make_optimizer(groups, OptimizerSpec(name="adam", lr=0.001)), torch.optim.Adam)
