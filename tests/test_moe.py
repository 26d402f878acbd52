"""The mixture-of-experts classifier and expert deactivation: top-2 routing, masking through route_bias alone,
the top-k experts by score, the seeded random control, forcing, and the bad inputs refused before training."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from conftest import FIXTURE_SPECS, files_under, make_request, run_cli
from safetensors.torch import load_file, save_file

from unlearn.checkpoints import load_weights_into
from unlearn.data.tensors import TensorData
from unlearn.methods import METHODS, make_hparams
from unlearn.methods.expert_deactivation import selection_frequencies, take
from unlearn.models.base import build_model, seeded_build
from unlearn.models.moe import SWITCH, MoELayer, routed_layers
from unlearn.spec import Recipe
from unlearn.train import train_with_recipe

FORGET_CLASS = 3


@pytest.fixture(scope="module")
def trained(digits_kind):
    """(MoE model trained briefly on the digits training split, forget = class 3, retain = the rest)."""
    ds = digits_kind.dataset
    model = seeded_build(lambda: build_model("moe", 1, (8, 8), ds.num_classes, ds.mean, ds.std), 0, (), "cpu")
    recipe = Recipe(epochs=6, batch_size=64, lr=0.05)
    train_with_recipe(model, ds.train, recipe, seed=0).eval()
    is_forget = ds.train.y == FORGET_CLASS
    return model, ds.train.where(is_forget), ds.train.where(~is_forget)


def unlearn(name: str, digits_kind, trained, seed: int = 0, **hparams):
    """Run method `name` on a copy of the trained model: (request, unlearned model)."""
    model, forget, retain = trained
    cls = METHODS.get(name)
    request = make_request(digits_kind, copy.deepcopy(model), forget, retain, seed=seed,
                           forget_classes=(FORGET_CLASS,))
    return request, cls(make_hparams(cls, name, hparams)).unlearn(request)


def layer_inputs(model, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of each routed layer for images `x`."""
    seen = []
    handles = [layer.register_forward_pre_hook(lambda m, i: seen.append(i[0])) for _, layer in routed_layers(model)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def accuracy(model, data: TensorData) -> float:
    with torch.no_grad():
        return (model(data.x).argmax(1) == data.y).float().mean().item()


def test_the_model_trains_and_routes_each_sample_to_exactly_its_top_2_experts(trained, digits_kind):
    model, _, _ = trained
    train = digits_kind.dataset.train
    assert accuracy(model, train) > 0.95
    layers = routed_layers(model)
    assert [name for name, _ in layers] == ["body.3", "body.4"]
    for (_, layer), x in zip(layers, layer_inputs(model, train.x), strict=True):
        routing = layer.route(x)
        assert routing.selected.shape == (len(train), 2)
        assert (routing.selected[:, 0] != routing.selected[:, 1]).all()
        top2 = routing.logits.topk(2, dim=1).indices
        assert torch.equal(routing.selected.sort(1).values, top2.sort(1).values)
        assert torch.allclose(routing.gates.sum(1), torch.ones(len(train)))
        # The layer's output is the gated sum of exactly those two experts.
        i = 5
        by_hand = sum(g * layer.experts[int(e)](x[i : i + 1])[0] for g, e in zip(routing.gates[i], routing.selected[i],
                                                                                  strict=True))
        assert torch.allclose(layer(x[i : i + 1])[0], by_hand, atol=1e-6)
        # Every expert is used by some sample: training did not collapse the routing onto two experts.
        assert len(routing.selected.unique()) >= 4


def test_masked_experts_are_never_selected_and_the_output_is_the_model_without_them(trained, digits_kind):
    model, _, _ = trained
    x = digits_kind.dataset.train.x
    masked = copy.deepcopy(model)
    off = [1, 6]
    masked.body[3].route_bias[off] = -SWITCH
    routing = masked.body[3].route(layer_inputs(masked, x)[0])
    assert not torch.isin(routing.selected, torch.tensor(off)).any()
    # The same model rebuilt with a first MoE layer of the six other experts only.
    keep = [e for e in range(8) if e not in off]
    smaller = copy.deepcopy(model)
    old = model.body[3]
    new = MoELayer(128, len(keep), 2, 128)
    with torch.no_grad():
        new.router.weight.copy_(old.router.weight[keep])
        new.router.bias.copy_(old.router.bias[keep])
    new.experts = torch.nn.ModuleList(copy.deepcopy(old.experts[e]) for e in keep)
    smaller.body[3] = new
    with torch.no_grad():
        assert torch.allclose(masked(x), smaller(x), atol=1e-5)
        assert not torch.allclose(masked(x), model(x), atol=1e-3)


def test_the_switched_off_experts_are_exactly_those_with_the_highest_scores(trained, digits_kind):
    model, forget, retain = trained
    request, out = unlearn("expert-deactivation", digits_kind, trained, k=3)
    layers = [layer for _, layer in routed_layers(model)]
    scores = selection_frequencies(model, layers, forget) - selection_frequencies(model, layers, retain)
    # The score is the selection frequency on D_f minus that on D_r, computed here by hand for the first layer.
    first = layers[0].route(layer_inputs(model, forget.x)[0]).selected
    assert torch.allclose(scores[0, 2], (first == 2).any(1).float().mean()
                          - (layers[0].route(layer_inputs(model, retain.x)[0]).selected == 2).any(1).float().mean())
    assert request.info["scores"]["body.3"] == pytest.approx(scores[0].tolist(), abs=1e-6)
    best = {divmod(int(j), 8) for j in scores.flatten().topk(3).indices}
    chosen = {(["body.3", "body.4"].index(e["layer"]), e["expert"]) for e in request.info["experts"]}
    assert chosen == best
    for i, (_, layer) in enumerate(routed_layers(out)):
        expected = torch.tensor([-SWITCH if (i, e) in best else 0.0 for e in range(8)])
        assert torch.equal(layer.route_bias, expected)
    assert accuracy(out, forget) < accuracy(model, forget)


def test_switching_off_keeps_top_2_selectable_experts_in_each_layer():
    layers = [MoELayer(4, 8, 2, 4), MoELayer(4, 8, 2, 4)]
    order = [(0, e) for e in range(8)] + [(1, e) for e in range(8)]
    assert take(order, 7, layers, "off") == [(0, e) for e in range(6)] + [(1, 0)]
    assert take(order, 7, layers, "force") == [(0, e) for e in range(7)]


def test_the_random_control_draws_its_experts_from_the_cell_seed(trained, digits_kind):
    def experts(seed):
        request, _ = unlearn("expert-deactivation-random", digits_kind, trained, seed=seed, k=2)
        return request, [(e["layer"], e["expert"]) for e in request.info["experts"]]

    request, first = experts(0)
    assert experts(0)[1] == first
    units = [(name, e) for name in ("body.3", "body.4") for e in range(8)]
    drawn = torch.randperm(16, generator=request.generator("experts"))[:2].tolist()
    assert first == [units[j] for j in drawn]
    assert len({tuple(experts(seed)[1]) for seed in (0, 1, 2, 3)}) > 1


@pytest.mark.parametrize("mode", ["off", "force"])
def test_only_route_bias_changes_and_the_model_round_trips_through_safetensors(trained, digits_kind, mode, tmp_path):
    model, _, retain = trained
    _, out = unlearn("expert-deactivation", digits_kind, trained, k=2, mode=mode)
    before, after = model.state_dict(), out.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(key.endswith("route_bias") for key in changed)
    save_file(after, tmp_path / "unlearned.safetensors")
    loaded = copy.deepcopy(model)
    load_weights_into(loaded, load_file(tmp_path / "unlearned.safetensors"), "test")
    with torch.no_grad():
        assert torch.equal(loaded(retain.x), out(retain.x))


def test_the_model_builds_for_mnist1d_sequences():
    model = build_model("moe", 1, (1, 40), 10, (0.0,), (1.0,))
    assert model(torch.rand(3, 1, 1, 40)).shape == (3, 10) and len(routed_layers(model)) == 2


def test_forcing_the_forget_experts_raises_the_forget_class_share_of_predictions(trained, digits_kind):
    model, _, retain = trained

    def forget_probability(m):
        """The mean predicted probability of the forget class on retain samples (none of them is a 3)."""
        with torch.no_grad():
            return m(retain.x).softmax(1)[:, FORGET_CLASS].mean().item()

    _, forced = unlearn("expert-deactivation", digits_kind, trained, k=2, mode="force")
    # Measured: 0.28 % -> 1.8 % when forcing the two experts most distinctive of class 3.
    assert forget_probability(forced) > 3 * forget_probability(model)


def tiny_spec(tmp_path, model: str) -> str:
    spec = yaml.safe_load((FIXTURE_SPECS / "digits.yaml").read_text())
    spec.update(name="digits-tiny-moe", model=model, metrics=["accuracy"], gap_metrics=["UA", "RA", "TA"],
                report_metrics=[], hparams={})
    spec["train"]["epochs"] = 3
    spec.pop("evaluation", None)
    spec["grid"] = {"methods": ["expert-deactivation"], "forget": ["class:3"], "seeds": [0, 1]}
    path = tmp_path / "digits-tiny-moe.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.mark.parametrize("model, hparam, message", [
    ("small-cnn", [], "expert-deactivation needs a mixture-of-experts model with a router"),
    ("moe", ["--hparam", "expert-deactivation.k=13"], "expert-deactivation: k=13 but the model's 2 MoE layers have 16 "
     "experts, of which at most 12 can be chosen while each layer keeps its top-k experts selectable; use 1 <= k <= 12"),
    ("moe", ["--hparam", "expert-deactivation.k=17", "--hparam", "expert-deactivation.mode=force"],
     "at most 16 can be chosen; use 1 <= k <= 16"),
])
def test_bad_inputs_exit_2_with_one_line_before_training(tmp_path, capsys, model, hparam, message):
    work = tmp_path / "work"
    code, _, err = run_cli(capsys, "run", "--benchmark", tiny_spec(tmp_path, model), *hparam, "--workdir", str(work),
                           "--no-progress")
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not files_under(work / "data" / "cache")
