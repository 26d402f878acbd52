"""neuron-deactivation and its random control: which units they switch off, and that switched-off units are off."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import make_request, run_cli
from sklearn.metrics import average_precision_score
from tiny_lm import lm_request, tiny_lm
from torch import nn

from unlearn.data import TensorData
from unlearn.errors import UserError
from unlearn.methods import Track, resolve_method
from unlearn.models import Classifier, build_model
from unlearn.train import train_with_recipe
from unlearn.units import example_layers, find_layers


def small_cnn(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("small-cnn", 1, (8, 8), 10, [0.5], [0.5])


class Block(nn.Module):
    """torchvision's ResNet BasicBlock pattern: conv-bn-relu, conv-bn, += shortcut (in place), the same ReLU again."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += x
        return self.relu(out)


def residual_cnn():
    """A ResNet in miniature (stem conv-bn-relu, one block): 8 + 8 units; the block's conv2 has none."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True), Block(8),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Classifier(body, nn.Linear(8, 10), [0.5], [0.5])


def random_images(n: int, seed: int, shift: float = 0.0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData.of((torch.rand(n, 1, 8, 8, generator=g) + shift).clamp(0, 1), torch.zeros(n, dtype=torch.long))


def run(name: str, model, forget: TensorData, retain: TensorData | None, seed: int = 0, **hparams):
    from unlearn.methods import make_hparams

    cls = resolve_method(name)
    method = cls(make_hparams(cls, name, hparams))
    request = make_request_for(model, forget, retain if method.track is Track.FULL else None, seed)
    return method.unlearn(request), request


def make_request_for(model, forget, retain, seed):
    from unlearn.methods import UnlearnRequest
    from unlearn.spec import Recipe

    return UnlearnRequest(model=copy.deepcopy(model), forget=forget, retain=retain, num_classes=10,
                          device=torch.device("cpu"), seed=seed, recipe=Recipe(epochs=1, batch_size=8, lr=0.1),
                          new_model=lambda *tags: copy.deepcopy(model),
                          track=Track.FULL if retain is not None else Track.FORGET_ONLY,
                          train_recipe=lambda model, data: model)


# The small CNN's layers of units, read independently of unlearn.units: (producer, activation module) by name.
SMALL_CNN_UNITS = [("body.0", "body.1"), ("body.2", "body.3"), ("body.6", "body.7")]


def switched_off(before, after, producers) -> list[tuple[str, int]]:
    """(producer, output) of every unit whose incoming weights changed."""
    old, new = dict(before.named_modules()), dict(after.named_modules())
    return [(name, i) for name in producers for i in range(old[name].weight.shape[0])
            if not torch.equal(old[name].weight[i], new[name].weight[i])]


def post_activations(model, x, activations) -> dict[str, torch.Tensor]:
    """Each named activation module's output on x, via plain forward hooks."""
    outputs, modules = {}, dict(model.named_modules())
    handles = [modules[name].register_forward_hook(lambda m, a, out, name=name: outputs.__setitem__(name, out.clone()))
               for name in activations]
    model.eval()
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return outputs


def test_the_top_k_units_are_those_of_highest_average_precision():
    model, forget, retain = small_cnn(), random_images(40, 1, shift=0.2), random_images(120, 2)
    acts = {name: [] for _, name in SMALL_CNN_UNITS}
    for data in (forget, retain):
        out = post_activations(model, data.x, acts)
        for name in acts:
            acts[name].append(out[name].flatten(2).mean(2) if out[name].dim() == 4 else out[name])
    table = torch.cat([torch.cat(acts[name]) for _, name in SMALL_CNN_UNITS], dim=1).double().numpy()
    labels = np.r_[np.ones(len(forget)), np.zeros(len(retain))]
    scores = [average_precision_score(labels, table[:, u]) for u in range(table.shape[1])]
    units = [(producer, i) for (producer, name) in SMALL_CNN_UNITS for i in range(torch.cat(acts[name]).shape[1])]
    expected = sorted(units[u] for u in np.argsort(scores)[::-1][:10])
    assert len(set(np.sort(scores)[::-1][9:11])) == 2  # no tie at the cut: the top 10 are well defined

    unlearned, request = run("neuron-deactivation", model, forget, retain, k=10)
    assert sorted(switched_off(model, unlearned, [p for p, _ in SMALL_CNN_UNITS])) == expected
    assert request.info["units"] == 112 and request.info["k"] == 10
    assert sum(request.info["layers"].values()) == 10


def changed_entries(before, after) -> dict[str, torch.Tensor]:
    """Per tensor of the state dict, a boolean mask of the entries that differ (bitwise) after."""
    b, a = before.state_dict(), after.state_dict()
    return {key: b[key] != a[key] for key in b}


# Per model: each unit layer's producer -> the module whose output, after a ReLU, is the units' activation.
FOLLOWERS = {"small-cnn": {"body.0": "body.0", "body.2": "body.2", "body.6": "body.6"},
             "residual": {"body.0": "body.1", "body.3.conv1": "body.3.bn1"}}


@pytest.mark.parametrize("make, model_name", [(small_cnn, "small-cnn"), (residual_cnn, "residual")])
def test_switched_off_units_output_zero_and_nothing_else_changes(make, model_name):
    model, followers = make(), FOLLOWERS[model_name]
    k = 10
    unlearned, request = run("neuron-deactivation-random", model, random_images(8, 3), None, k=k)
    assert request.info["units"] == sum(dict(model.named_modules())[p].weight.shape[0] for p in followers)
    producers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear) and n != "head"]
    off = switched_off(model, unlearned, producers)
    assert len(off) == k and {p for p, _ in off} == set(request.info["layers"]) <= set(followers)

    # only the switched-off units' rows, biases and BatchNorm affine entries changed, and to exactly 0
    owner = {follower: producer for producer, follower in followers.items()}
    changed = changed_entries(model, unlearned)
    state = unlearned.state_dict()
    for key, mask in changed.items():
        if mask.any():
            module, field = key.rsplit(".", 1)
            assert field in ("weight", "bias") and bool((state[key][mask] == 0).all()), key
            rows = sorted({int(i) for i in mask.reshape(mask.shape[0], -1).any(1).nonzero().flatten()})
            assert rows == sorted(i for p, i in off if p == owner.get(module, module)), key
    assert not any(changed[key].any() for key in changed if "running" in key or "num_batches" in key)

    # their outputs after the activation are exactly 0, in eval and in train mode; the others are not all 0
    x = random_images(16, 4).x
    modules = dict(unlearned.named_modules())
    for train in (False, True):
        outputs = {}
        handles = [modules[follower].register_forward_hook(
            lambda m, a, out, producer=producer, outputs=outputs: outputs.__setitem__(producer, torch.relu(out).detach()))
            for producer, follower in followers.items()]
        unlearned.train(train)
        unlearned(x)
        for handle in handles:
            handle.remove()
        for producer, out in outputs.items():
            mine = [i for p, i in off if p == producer]
            others = [i for i in range(out.shape[1]) if i not in mine]
            assert bool((out[:, mine] == 0).all()) and bool((out[:, others] != 0).any())


def test_the_language_models_switched_off_ffn_units_output_zero():
    model, compare, city = tiny_lm()
    request = lm_request(model, compare, city, Track.FULL)
    cls = resolve_method("neuron-deactivation")
    unlearned = cls(cls.HParams(k=20)).unlearn(request)
    assert request.info["units"] == 2 * 128 and set(request.info["layers"]) <= {
        f"lm.transformer.h.{i}.mlp.c_fc" for i in range(2)}
    outputs = post_activations(unlearned, compare.x[:4], [f"lm.transformer.h.{i}.mlp.act" for i in range(2)])
    before, after = dict(model.named_modules()), dict(unlearned.named_modules())
    total = 0
    for i in range(2):
        old, new = before[f"lm.transformer.h.{i}.mlp.c_fc"], after[f"lm.transformer.h.{i}.mlp.c_fc"]
        off = [j for j in range(old.weight.shape[1]) if not torch.equal(old.weight[:, j], new.weight[:, j])]
        total += len(off)
        out = outputs[f"lm.transformer.h.{i}.mlp.act"]
        assert bool((out[..., off] == 0).all()) and bool((out[..., [j for j in range(128) if j not in off]] != 0).any())
    assert total == 20
    changed = [k for k, v in changed_entries(model, unlearned).items() if v.any()]
    assert changed and all(".mlp.c_fc." in k for k in changed)
    with pytest.raises(UserError, match="k=300 is larger than the 256 hidden units"):
        cls(cls.HParams(k=300)).check(model)


def test_the_random_control_draws_from_the_seed_and_is_not_the_top_k():
    model, forget, retain = small_cnn(), random_images(40, 1, shift=0.2), random_images(120, 2)
    producers = [p for p, _ in SMALL_CNN_UNITS]
    picks = [switched_off(model, run("neuron-deactivation-random", model, forget, None, seed=s, k=10)[0], producers)
             for s in (0, 0, 1)]
    top = switched_off(model, run("neuron-deactivation", model, forget, retain, k=10)[0], producers)
    assert len(picks[0]) == 10 and picks[0] == picks[1] and picks[0] != picks[2] and picks[0] != top


def test_switching_off_a_class_units_forgets_it(digits_kind):
    from unlearn.spec import Recipe

    train = digits_kind.train
    model = train_with_recipe(small_cnn(), train, Recipe(epochs=8, batch_size=64, lr=0.05), seed=0)
    forget, retain = train.where(train.y == 3), train.where(train.y != 3)
    request = make_request(digits_kind, copy.deepcopy(model), forget, retain)
    cls = resolve_method("neuron-deactivation")
    unlearned = cls(cls.HParams(k=16)).unlearn(request)

    def accuracy(m, data):
        m.eval()
        with torch.no_grad():
            return (m(data.x).argmax(1) == data.y).float().mean().item()

    assert accuracy(model, forget) > 0.9 and accuracy(unlearned, forget) < accuracy(model, forget) - 0.5
    assert accuracy(unlearned, retain) > 0.8


def test_k_larger_than_the_units_exits_2_with_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--methods", "neuron-deactivation", "--hparam", "neuron-deactivation.k=5000",
                           "--forget", "class:3", "--seeds", "0", "--workdir", str(tmp_path), "--no-progress")
    assert code == 2 and err.count("\n") == 1, err
    assert "neuron-deactivation: k=5000 is larger than the 112 hidden units of this model" in err
    assert not (tmp_path / "data" / "runs").exists()


# Every registered classifier's units, counted from its code: the ResNet's stem conv and each block's conv1 (64 + 2 ×
# (64 + 128 + 256 + 512)), never a conv2 or downsample (their sum with the shortcut enters the ReLU); the ViT's fc1.
UNITS = {"mlp": (1, (8, 8), 2 * 256), "small-cnn": (1, (8, 8), 16 + 32 + 64), "cnn1d": (1, (1, 40), 3 * 25),
         "vit": (1, (8, 8), 4 * 128), "resnet18": (3, (8, 8), 64 + 2 * (64 + 128 + 256 + 512))}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_each_models_units_are_found_from_its_own_input(name):
    channels, size, count = UNITS[name]
    torch.manual_seed(0)
    layers = example_layers(build_model(name, channels, size, 10, [0.5] * channels, [0.5] * channels))
    assert sum(layer.size for layer in layers) == count
    assert not any(("conv2" in layer.producer or "downsample" in layer.producer or "head" in layer.producer
                    or layer.producer.endswith("mlp.3")) for layer in layers)
    if name == "resnet18":
        assert all(layer.norm == layer.producer.replace("conv", "bn") for layer in layers)


class Odd(nn.Module):
    """Layers that have no units: a functional ReLU, a sigmoid (f(0) ≠ 0), a layer called twice; then one that has."""

    def __init__(self):
        super().__init__()
        self.functional, self.sigmoid, self.shared = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.sig, self.relu = nn.Sigmoid(), nn.ReLU()
        self.last, self.norm = nn.Linear(4, 6), nn.BatchNorm1d(6)

    def forward(self, x):
        x = self.relu(self.shared(self.relu(self.shared(self.sig(self.sigmoid(torch.relu(self.functional(x))))))))
        return self.relu(self.norm(self.last(x)))


def test_only_a_layer_feeding_an_activation_with_f0_0_once_has_units():
    layers = find_layers(Odd(), torch.rand(3, 4))
    assert [(layer.producer, layer.norm, layer.size) for layer in layers] == [("last", "norm", 6)]
