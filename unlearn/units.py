"""A model's hidden units: finding them, reading their activations, switching them off.

A *unit* is one output feature of a layer (a `nn.Linear` or transformers' GPT-2 `Conv1D`) or one output channel
of a convolution (`nn.Conv1d/2d/3d`), whose output enters an activation, directly or through the `BatchNorm` right
after it: a hidden neuron of an MLP or a transformer's FFN, or a conv channel. Units are found by following the
data, not by model name: one forward pass with hooks on every candidate module records which module's output
tensor is the very tensor an activation module receives (`find_layers`). So in ResNet-18 the first conv of each
block (conv → bn → relu) has units and the second (conv → bn → + shortcut → relu) has none, since the shortcut sum
enters its ReLU; in the ViT only each block's `mlp.0` (→ GELU) has units; in GPT-2 each block's `mlp.c_fc`
(→ its GELU). An activation is a parameter-free module of `torch.nn`'s or transformers' activations that keeps its
input's shape and maps 0 to exactly 0 (ReLU, GELU, SiLU, tanh; not sigmoid, not softmax), so a unit whose incoming
weights are zero outputs exactly 0 after it (`switch_off`). Activations applied as functions (`F.relu(x)`) are not
seen, and a layer called more than once per forward pass (shared weights) is left out.

How a kind of model is run for this (`Reader`): a classifier (`unlearn.models.Classifier`) through `features`,
so its head is never run and never a unit, on an all-zeros image of its `input_shape` when no data is at hand;
a two-choice language model (`TwoChoiceLM`) through `hidden_states` on option 0 of each item only, a unit's
activation averaged over that option's non-padding tokens (the question and option 0's continuation; a text line's
tokens). Any other module is run whole, its activations averaged over every position.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from unlearn.data.tensors import TensorData

ACTIVATION_MODULES = ("torch.nn.modules.activation", "transformers.activations")
"""Where the activation modules are defined (a module's class must come from one of these)."""


@dataclass(frozen=True)
class Layer:
    """One layer of units: `producer`'s output features (through `norm`, a BatchNorm, if any) entering `activation`."""

    producer: str
    """The qualified name of the Linear, Conv1D or convolution whose outputs the units are."""
    norm: str | None
    """The BatchNorm between the producer and the activation, or None."""
    activation: str
    size: int
    """The number of units (the producer's output features or channels)."""
    weight_dim: int
    """The dimension of the producer's weight that indexes its outputs (0; 1 for transformers' Conv1D)."""
    channels_first: bool
    """Whether the units are dimension 1 of the activation's output (convolutions) rather than the last."""


@dataclass(frozen=True)
class Reader:
    """How a kind of model is run to read its units."""

    run: Callable[[nn.Module, Tensor], Any]
    """A forward pass of inputs x that reaches every unit."""
    positions: Callable[[Tensor], Tensor | None]
    """Which positions of each sample an activation is averaged over ([B, P] bool), or None for all."""
    example: Callable[[nn.Module], Tensor | None]
    """A minimal input for finding the layers without data, or None when the model cannot say."""


def _classifier_example(model: nn.Module) -> Tensor | None:
    shape = getattr(model, "input_shape", None)
    return None if shape is None else torch.zeros(1, *shape, device=_device(model))


def _lm_example(model: nn.Module) -> Tensor:
    from unlearn.language.encode import CONTEXT, SCORED

    return torch.tensor([[[[0, 0], [CONTEXT, SCORED]]]], device=_device(model))


def _lm_positions(x: Tensor) -> Tensor:
    from unlearn.language.encode import PADDING

    return x[:, 0, 1] != PADDING


DEFAULT_READER = Reader(run=lambda model, x: model(x), positions=lambda x: None, example=lambda model: None)


def readers() -> dict[type, Reader]:
    """The readers by model class (a subclass uses its nearest ancestor's)."""
    from unlearn.language.model import TwoChoiceLM
    from unlearn.models.base import Classifier

    return {
        Classifier: Reader(run=lambda model, x: model.features(x), positions=lambda x: None,
                           example=_classifier_example),
        TwoChoiceLM: Reader(run=lambda model, x: model.hidden_states(x[:, :1]), positions=_lm_positions,
                            example=_lm_example),
    }


def reader_of(model: nn.Module) -> Reader:
    """The reader for `model`'s class."""
    table = readers()
    return next((table[cls] for cls in type(model).__mro__ if cls in table), DEFAULT_READER)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def weight_dim(module: nn.Module) -> int | None:
    """The weight dimension indexing `module`'s outputs if it is a producer of units (Linear, ConvNd, Conv1D)."""
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return 0
    if "transformers" in sys.modules:  # a model can hold a transformers Conv1D only once transformers is imported
        from transformers.pytorch_utils import Conv1D

        if isinstance(module, Conv1D):
            return 1
    return None


def is_norm(module: nn.Module) -> bool:
    """Whether `module` is a BatchNorm with a per-channel affine weight and bias (which `switch_off` zeroes)."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine


def is_activation(module: nn.Module) -> bool:
    """Whether `module` is a parameter-free activation module (checked for f(0) = 0 when its input is seen)."""
    return type(module).__module__ in ACTIVATION_MODULES and next(module.parameters(), None) is None


@contextmanager
def _following(model: nn.Module, names: set[str] | None,
               on_unit: Callable[[str, str | None, str, Tensor, Tensor], None]) -> Iterator[None]:
    """Hooks calling `on_unit(producer, norm, activation, activation input, activation output)` each time a
    producer's output (through an optional BatchNorm) is the very tensor an activation receives; `names` limits the
    hooked modules (None: every candidate)."""
    latest: dict[str, tuple[Tensor, int, str, str | None]] = {}  # last outputs: (it, its version, producer, norm)
    entering: dict[str, tuple[Tensor, str, str | None]] = {}

    def unchanged(tensor: Tensor, version: int, args: tuple[Any, ...]) -> bool:
        # the same tensor, not modified in place since (ResNet's `out += identity` keeps bn2's output object)
        return bool(args) and args[0] is tensor and tensor._version == version

    def produced(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            latest[name] = (output, output._version, name, None)
        return hook

    def normed(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            for key, (tensor, version, producer, norm) in list(latest.items()):
                if norm is None and unchanged(tensor, version, args):
                    del latest[key]
                    entering[name] = (tensor, producer, None)

        def after(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            if name in entering:
                producer = entering.pop(name)[1]
                latest[name] = (output, output._version, producer, name)
        return hook, after

    def activated(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:  # before an in-place activation changes it
            for key, (tensor, version, producer, norm) in list(latest.items()):
                if unchanged(tensor, version, args):
                    del latest[key]
                    entering[name] = (tensor, producer, norm)  # only its shape is read afterwards

        def after(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            if name in entering:
                tensor, producer, norm = entering.pop(name)
                on_unit(producer, norm, name, tensor, output)
        return hook, after

    handles = []
    for name, module in model.named_modules():
        if names is not None and name not in names:
            continue
        if weight_dim(module) is not None:
            handles.append(module.register_forward_hook(produced(name)))
        elif is_norm(module) or is_activation(module):
            before, after = (normed if is_norm(module) else activated)(name)
            handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """`model` in eval mode without gradients for the block, its train/eval flags restored afterwards."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, mode in modes.items():
            module.training = mode


def find_layers(model: nn.Module, x: Tensor) -> list[Layer]:
    """The layers of units of `model`, in the order their activations run on inputs `x` (a batch, or one sample)."""
    modules = dict(model.named_modules())
    found: dict[str, Layer] = {}
    calls = Counter()

    def on_unit(producer: str, norm: str | None, activation: str, entered: Tensor, output: Tensor) -> None:
        module, dim = modules[producer], weight_dim(modules[producer])
        channels_first = dim == 0 and not isinstance(module, nn.Linear)
        size = module.weight.shape[dim]
        zero = torch.zeros_like(entered)
        maps_zero = modules[activation].forward(zero)  # no hooks
        if maps_zero.shape == zero.shape and bool((maps_zero == 0).all()) and \
                entered.shape[1 if channels_first else -1] == size:
            found.setdefault(producer, Layer(producer, norm, activation, int(size), int(dim), channels_first))

    counting = [module.register_forward_hook(lambda *_, name=name: calls.update([name]))
                for name, module in modules.items() if weight_dim(module) is not None]
    try:
        with _evaluating(model), _following(model, None, on_unit):
            reader_of(model).run(model, x)
    finally:
        for handle in counting:
            handle.remove()
    return [layer for name, layer in found.items() if calls[name] == 1]  # a layer called twice shares its weights


def example_layers(model: nn.Module) -> list[Layer] | None:
    """`find_layers` on the model's own minimal input (no data needed), or None if the model cannot make one."""
    example = reader_of(model).example(model)
    return None if example is None else find_layers(model, example)


def read_units(model: nn.Module, layers: list[Layer], data: TensorData, batch_size: int) -> Tensor:
    """Every unit's activation on every sample of `data`, averaged over positions: [N, units] float32 on the CPU,
    the units in `layers` order."""
    reader = reader_of(model)
    by_producer = {layer.producer: i for i, layer in enumerate(layers)}
    names = {name for layer in layers for name in (layer.producer, layer.norm, layer.activation) if name}
    rows: list[Tensor] = []
    for x, _ in data.batches(batch_size):
        mask = reader.positions(x)
        seen: list[Tensor | None] = [None] * len(layers)

        def on_unit(producer: str, norm: str | None, activation: str, entered: Tensor, output: Tensor,
                    mask: Tensor | None = mask, seen: list[Tensor | None] = seen) -> None:
            i = by_producer.get(producer)
            if i is not None:
                seen[i] = _averaged(output, layers[i].channels_first, mask)

        with _evaluating(model), _following(model, names, on_unit):
            reader.run(model, x)
        missing = [layers[i].producer for i, value in enumerate(seen) if value is None]
        if missing:
            raise RuntimeError(f"the units of {missing[0]} were not reached by the forward pass")
        rows.append(torch.cat([value for value in seen if value is not None], dim=1).float().cpu())
    return torch.cat(rows)


def _averaged(output: Tensor, channels_first: bool, mask: Tensor | None) -> Tensor:
    """An activation [B, (positions...), U] or [B, U, (positions...)] averaged over positions: [B, U]."""
    units = output.movedim(1, -1) if channels_first else output
    units = units.reshape(len(units), -1, units.shape[-1])
    if mask is None or mask.shape != units.shape[:2]:
        return units.mean(1)
    weights = mask.to(units.dtype).unsqueeze(-1)
    return (units * weights).sum(1) / weights.sum(1).clamp(min=1)


@torch.no_grad()
def switch_off(model: nn.Module, layers: list[Layer], units: list[int]) -> dict[str, int]:
    """Zero the incoming weights and bias of `units` (indices into the units of `layers`, in order), and the affine weight and
    bias of their BatchNorm, so that each one's activation output is exactly 0; returns how many per layer."""
    modules = dict(model.named_modules())
    starts, total = [], 0
    for layer in layers:
        starts.append(total)
        total += layer.size
    chosen: dict[int, list[int]] = {}
    for unit in units:
        i = max(j for j, start in enumerate(starts) if start <= unit)
        chosen.setdefault(i, []).append(unit - starts[i])
    counts = {}
    for i, local in sorted(chosen.items()):
        layer = layers[i]
        producer = modules[layer.producer]
        index = torch.tensor(sorted(local), device=producer.weight.device)
        producer.weight.index_fill_(layer.weight_dim, index, 0.0)
        if producer.bias is not None:
            producer.bias.index_fill_(0, index, 0.0)
        if layer.norm is not None:
            norm = modules[layer.norm]
            norm.weight.index_fill_(0, index, 0.0)
            norm.bias.index_fill_(0, index, 0.0)
        counts[layer.producer] = len(local)
    return counts
