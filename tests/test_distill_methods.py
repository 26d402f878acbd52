"""SCRUB, Bad Teacher, NegGrad+ and Amnesiac: each method's defining behaviour, on small digits slices."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from conftest import make_grid, make_request

import unlearn.methods.amnesiac as amnesiac_module
import unlearn.methods.neggrad_plus as neggrad_module
import unlearn.methods.scrub as scrub_module
from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.forget import ForgetSpec, load_or_build
from unlearn.methods import METHODS, make_hparams
from unlearn.methods.amnesiac import amnesiac_data, wrong_labels
from unlearn.methods.bad_teacher import mixture_kl, unlearning_data
from unlearn.methods.base import frozen_copy
from unlearn.methods.finetune import FinetuneHParams
from unlearn.methods.scrub import ScrubHParams, distill_kl, scrub_phases
from unlearn.seeding import generator

NAMES = ["scrub", "bad-teacher", "neggrad-plus", "amnesiac"]


@pytest.fixture
def cell(digits_spec, digits_kind, workspace):
    """(trained original digits model, splits of the class:3 forget set), seed 0."""
    runner = make_grid(digits_spec, digits_kind, workspace, ["finetune"], ["class:3"], [0])
    original = runner.models.load_or_train_original(0).model
    manifest = load_or_build(workspace.forget_dir, ForgetSpec.parse("class:3"), digits_kind.dataset, 0)
    return original, digits_kind.splits(manifest)


@pytest.fixture
def small(cell, digits_kind):
    """A request factory on small slices (20 forget, 200 retain samples) for the behavioural unit tests."""
    original, splits = cell
    forget, retain = splits["forget"].subset(range(20)), splits["retain"].subset(range(200))

    def request(seed: int = 0):
        return make_request(digits_kind, copy.deepcopy(original), forget, retain, seed=seed)

    return original, request


def run(name: str, request, **hparams):
    cls = METHODS.get(name)
    return cls(make_hparams(cls, name, hparams)).unlearn(request)


def accuracy(model, data: TensorData) -> float:
    model.eval()
    with torch.no_grad():
        return (model(data.x).argmax(1) == data.y).float().mean().item()


def recording(phases, log):
    """`phases` whose losses append (epoch, phase number, x, y) to `log` (the epoch is seen through `active`)."""
    now = {}
    out = []
    for i, phase in enumerate(phases):

        def active(epoch, phase=phase):
            now["epoch"] = epoch
            return phase.active(epoch)

        def loss(model, x, y, i=i, phase=phase):
            log.append((now["epoch"], i, x, y))
            return phase.loss(model, x, y)

        out.append(dataclasses.replace(phase, active=active, loss=loss))
    return out


def spy_on(monkeypatch, module, name, log):
    """Make `module.name` (sgd_fit or run_fit) record every loss call into `log`."""
    real = getattr(module, name)

    def spy(model, phases, *args, **kwargs):
        return real(model, recording(phases, log), *args, **kwargs)

    monkeypatch.setattr(module, name, spy)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- the KL helpers -----------------------------------------------------------------------------


def test_distill_kl_is_teacher_to_student_kl_times_t_squared_averaged_over_the_batch():
    gen = generator(0, "test")
    s, t = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    T = 2.0
    p_s, p_t = F.softmax(s / T, 1), F.softmax(t / T, 1)
    hand = T * T * (p_t * (p_t.log() - p_s.log())).sum() / 3
    torch.testing.assert_close(distill_kl(s, t, T), hand)
    assert distill_kl(t, t, T).abs() < 1e-6


def test_bad_teacher_loss_mixes_the_teachers_by_flag_with_the_references_mean_reduction():
    gen = generator(0, "test")
    s, good, bad = (torch.randn(4, 5, generator=gen) for _ in range(3))
    flag = torch.tensor([1, 0, 0, 1])
    q = F.softmax(s, 1)
    teacher = torch.where(flag.bool().unsqueeze(1), F.softmax(bad, 1), F.softmax(good, 1))
    hand = (teacher * (teacher.log() - q.log())).sum() / (4 * 5)  # kl_div's 'mean': over batch x classes
    torch.testing.assert_close(mixture_kl(s, good, bad, flag, 1.0), hand)


# --- SCRUB ----------------------------------------------------------------------------------------


def test_scrub_max_pass_runs_only_in_the_first_msteps_epochs_and_before_the_min_pass(small, monkeypatch):
    _, request = small
    log = []
    spy_on(monkeypatch, scrub_module, "sgd_fit", log)
    run("scrub", request(), epochs=4, msteps=2, forget_batch_size=8, batch_size=64)
    forget_calls = Counter(epoch for epoch, phase, _, _ in log if phase == 0)
    retain_calls = Counter(epoch for epoch, phase, _, _ in log if phase == 1)
    assert forget_calls == {0: 3, 1: 3}  # 20 forget samples in batches of 8, epochs 1 and 2 only
    assert retain_calls == {0: 4, 1: 4, 2: 4, 3: 4}
    assert [phase for epoch, phase, _, _ in log if epoch == 0] == [0] * 3 + [1] * 4

    log.clear()
    run("scrub", request(), epochs=2, msteps=0)
    assert log and all(phase == 1 for _, phase, _, _ in log)  # msteps = 0: D_f is never touched


def test_scrub_losses_are_minus_kl_on_forget_and_gamma_ce_plus_alpha_kl_on_retain(small):
    original, request = small
    req = request()
    hp = ScrubHParams(gamma=0.7, alpha=0.2, temperature=3.0)
    teacher = frozen_copy(original)
    max_phase, min_phase = scrub_phases(teacher, req, hp)
    x, y = req.forget.x[:8], req.forget.y[:8]
    assert max_phase.loss(copy.deepcopy(original), x, y).abs() < 1e-6  # student = teacher: KL = 0
    student = copy.deepcopy(original)
    with torch.no_grad():
        student.head.weight.add_(0.5 * torch.randn(student.head.weight.shape, generator=generator(0, "noise")))
    with torch.no_grad():
        kl = distill_kl(student(x), teacher(x), 3.0)
        assert kl > 0
        torch.testing.assert_close(max_phase.loss(student, x, y), -kl)
        expected = 0.7 * F.cross_entropy(student(x), y) + 0.2 * kl
        torch.testing.assert_close(min_phase.loss(student, x, y), expected)
    assert [max_phase.active(e) for e in range(4)] == [True, True, False, False]  # msteps = 2 (epochs from 0)


def test_scrub_teacher_is_a_frozen_copy_that_never_changes(small, monkeypatch):
    original, request = small
    teachers = []

    def spy(model):
        teachers.append(frozen_copy(model))
        return teachers[-1]

    monkeypatch.setattr(scrub_module, "frozen_copy", spy)
    student = run("scrub", request(), lr=0.02, epochs=2)
    (teacher,) = teachers
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert same_weights(teacher, original)
    assert not same_weights(student, original)


# --- Bad Teacher ----------------------------------------------------------------------------------


def test_bad_teacher_data_is_the_forget_set_plus_a_seeded_30_percent_of_retain_with_flags(small):
    _, request = small
    req = request()
    data = unlearning_data(req.forget, req.retain, 0.3, generator(0, "a"))
    assert len(data) == 20 + 60
    assert data.y.tolist() == [1] * 20 + [0] * 60
    assert data.index[:20].tolist() == req.forget.index.tolist()
    chosen = data.index[20:].tolist()
    assert len(set(chosen)) == 60 and set(chosen) <= set(req.retain.index.tolist())
    assert torch.equal(data.index, unlearning_data(req.forget, req.retain, 0.3, generator(0, "a")).index)
    assert not torch.equal(data.index, unlearning_data(req.forget, req.retain, 0.3, generator(1, "a")).index)


def test_bad_teacher_is_a_fresh_tagged_initialisation_and_the_student_moves_towards_it(small, digits_kind):
    original, request = small
    tags = []
    req = request()

    def new_model(*t):
        tags.append(t)
        return digits_kind.new_model(0, *t)

    req = dataclasses.replace(req, new_model=new_model)
    bad = digits_kind.new_model(0, "bad-teacher")
    assert not same_weights(bad, digits_kind.new_model(0)) and not same_weights(bad, original)

    def kl_to_bad(model):
        model.eval()
        with torch.no_grad():
            return distill_kl(model(req.forget.x), bad.eval()(req.forget.x), 1.0).item()

    before = kl_to_bad(copy.deepcopy(original))
    student = run("bad-teacher", req, lr=1e-3, epochs=3)
    assert tags == [("bad-teacher",)]
    assert kl_to_bad(student) < 0.8 * before


# --- NegGrad+ -------------------------------------------------------------------------------------


def test_neggrad_plus_with_alpha_one_is_exactly_finetuning_on_retain(small):
    _, request = small
    common = dict(epochs=2, lr=0.01, batch_size=32, momentum=0.9, weight_decay=5e-4)
    finetuned = METHODS.get("finetune")(FinetuneHParams(**common)).unlearn(request())
    plus = run("neggrad-plus", request(), alpha=1.0, anchor_decay=0.0, forget_batch_size=8, **common)
    assert same_weights(plus, finetuned)
    mixed = run("neggrad-plus", request(), alpha=0.95, anchor_decay=0.0, forget_batch_size=8, **common)
    assert not same_weights(mixed, finetuned)


def test_cycle_batches_reshuffles_each_pass():
    data = TensorData.of(torch.zeros(5, 1, 2, 2), torch.arange(5))
    stream = neggrad_module.cycle_batches(data, 2, generator(0, "cycle"))
    passes = [torch.cat([next(stream)[1] for _ in range(3)]).tolist() for _ in range(6)]  # batches of 2, 2, 1
    assert all(sorted(p) == list(range(5)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1


def test_neggrad_plus_cycles_the_forget_set_alongside_every_retain_batch(small, monkeypatch):
    _, request = small
    drawn = []
    real = neggrad_module.cycle_batches

    def spy(data, batch_size, gen):
        for batch in real(data, batch_size, gen):
            drawn.append(len(batch[1]))
            yield batch

    monkeypatch.setattr(neggrad_module, "cycle_batches", spy)
    run("neggrad-plus", request(), epochs=2, batch_size=32, forget_batch_size=8)
    assert len(drawn) == 2 * 7  # one forget batch per retain batch (200 / 32 -> 7 per epoch)
    assert drawn[:6] == [8, 8, 4, 8, 8, 4]  # 20 forget samples, exhausted and restarted


def test_neggrad_plus_anchor_pulls_towards_the_original_weights(small):
    original, request = small

    def distance(model):
        return (
            sum((p - q).pow(2).sum() for p, q in zip(model.parameters(), original.parameters(), strict=True))
            .sqrt()
            .item()
        )

    free = run("neggrad-plus", request(), epochs=2, lr=0.05, anchor_decay=0.0)
    anchored = run("neggrad-plus", request(), epochs=2, lr=0.05, anchor_decay=5.0)
    assert distance(anchored) < 0.8 * distance(free)


# --- Amnesiac -------------------------------------------------------------------------------------


def test_wrong_labels_are_uniform_over_the_other_classes():
    y = torch.full((3000,), 3)
    drawn = wrong_labels(y, 10, generator(0, "labels"))
    counts = Counter(drawn.tolist())
    assert set(counts) == set(range(10)) - {3}
    assert all(abs(c - 3000 / 9) < 0.2 * 3000 / 9 for c in counts.values())


def test_amnesiac_relabels_each_forget_sample_once_and_keeps_the_labels_across_epochs(small, monkeypatch):
    _, request = small
    req = request()
    data = amnesiac_data(req.forget, req.retain, 10, generator(0, "labels"))
    assert (data.y[:20] != req.forget.y).all() and torch.equal(data.y[20:], req.retain.y)
    assert torch.equal(data.index, torch.cat([req.forget.index, req.retain.index]))

    log = []
    spy_on(monkeypatch, amnesiac_module, "run_fit", log)
    run("amnesiac", req, epochs=3, batch_size=64)
    forget_rows = {bytes(x.numpy()): int(y) for x, y in zip(req.forget.x, req.forget.y, strict=True)}
    seen = {epoch: Counter() for epoch in range(3)}
    for epoch, _, x, y in log:
        for xi, yi in zip(x, y, strict=True):
            if bytes(xi.numpy()) in forget_rows:
                seen[epoch][(bytes(xi.numpy()), int(yi))] += 1
    assert sum(seen[0].values()) == 20 and seen[0] == seen[1] == seen[2]
    assert all(label != forget_rows[row] for row, label in seen[0])


def test_amnesiac_rejects_a_single_class_model():
    model = torch.nn.Module()
    model.head = torch.nn.Linear(4, 1)
    with pytest.raises(UserError, match="at least 2 classes"):
        METHODS.get("amnesiac")().check(model)


# --- all four -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_search_grid_is_small_and_valid(name):
    cls = METHODS.get(name)
    grid = list(itertools.product(*cls.search.values()))
    assert "lr" in cls.search and len(grid) <= 12
    for values in grid:
        make_hparams(cls, name, dict(zip(cls.search, values, strict=True)))


def test_bad_hyperparameters_are_user_errors():
    for name, bad in [
        ("scrub", {"msteps": -1}),
        ("bad-teacher", {"retain_fraction": 1.5}),
        ("neggrad-plus", {"alpha": 0}),
    ]:
        with pytest.raises(UserError):
            make_hparams(METHODS.get(name), name, bad)


# Reference defaults are tuned for CIFAR-10; on digits (128 forget samples) they take too few or too small
# steps to forget class 3 (SCRUB, Bad Teacher and NegGrad+ leave forget accuracy at 100 %, Amnesiac at
# ~97 %), so this test runs each method with stronger settings from its search grid's neighbourhood.
STRONGER = {
    "scrub": {"lr": 0.015},
    "bad-teacher": {"lr": 1e-3, "epochs": 10},
    "neggrad-plus": {"lr": 0.1, "alpha": 0.99, "momentum": 0.9},
    "amnesiac": {"lr": 1e-3},
}


@pytest.mark.parametrize("name", NAMES)
def test_each_method_forgets_class_3_and_keeps_the_retain_set(name, cell, digits_kind):
    original, splits = cell
    request = make_request(digits_kind, copy.deepcopy(original), splits["forget"], splits["retain"])
    assert accuracy(original, splits["forget"]) > 0.95
    model = run(name, request, **STRONGER[name])
    assert accuracy(model, splits["forget"]) < 0.5
    assert accuracy(model, splits["retain"]) > 0.85
