"""Manipulations of the training data before the original model trains (the corrective-unlearning setting).

A manipulation draws, from the cell seed, which training samples it changes and returns the
manipulated dataset (validation and test stay clean) with two evaluation splits the
`corrective` metric reads: `manip_true` (the manipulated test images with their true
labels) and `manip_target` (the same images labelled as the attacker wants them read).
Accuracy on `manip_target` is the attack success rate.

- poison: a random fraction of the training set (drawn from the samples not already of the
  target class, so every poisoned sample is mislabelled) gets a square trigger in the
  bottom-right corner set to the maximum pixel value and the target label (3×3 on 32×32
  images in the reference; here round(3·side/32), at least 2 pixels: 2×2 on 8×8 digits).
  Test: every test image not of the target class, triggered.
- interclass: a fraction (the reference: half) of the training samples of each of two
  classes take the other class's label. Test: the two classes' test images.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from unlearn.data.base import Dataset
from unlearn.data.tensors import TensorData
from unlearn.errors import UserError
from unlearn.hashing import hash_order
from unlearn.registry import Registry


@dataclass(frozen=True)
class Manipulated:
    """A dataset whose training split was manipulated, which samples were, and the evaluation splits."""

    dataset: Dataset
    indices: np.ndarray
    """Sorted training-set indices of the manipulated samples."""
    splits: dict[str, TensorData]
    """`manip_true` and `manip_target` (see the module docstring)."""


class Manipulation(ABC):
    """One kind of manipulation: parsing its arguments, checking them against a dataset, applying it."""

    syntax: str = ""

    @abstractmethod
    def parse(self, arg: str, options: dict[str, str]) -> dict[str, Any]:
        """Parameters from the manipulation's argument and its `key=value` options; UserError when malformed."""

    @abstractmethod
    def check(self, params: dict[str, Any], dataset: Dataset) -> None:
        """Raise UserError when the parameters do not fit `dataset`."""

    @abstractmethod
    def apply(self, params: dict[str, Any], dataset: Dataset, seed: int) -> Manipulated:
        """The manipulated dataset for `seed`."""

    def canonical(self, params: dict[str, Any]) -> str:
        """The argument and non-default options, written canonically."""
        return str(params)


MANIPULATIONS: Registry[type[Manipulation]] = Registry("manipulation")


def parse_number(text: str, what: str, kind: type = float) -> Any:
    """`text` as a `kind` (float or int); UserError naming `what` otherwise."""
    try:
        return kind(text)
    except ValueError:
        raise UserError(f"{what} must be {'an integer' if kind is int else 'a number'}, not {text!r}") from None


def _no_unknown(options: dict[str, str], known: set[str], where: str) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"{where} has no option {unknown[0]!r} (options: {', '.join(sorted(known)) or 'none'})")


def _check_label(label: int, dataset: Dataset, what: str) -> None:
    if not 0 <= label < dataset.num_classes:
        raise UserError(f"{what} {label} is not a label of {dataset.name} (labels are 0..{dataset.num_classes - 1})")


def default_patch(height: int, width: int) -> int:
    """The trigger side: 3 pixels on 32×32 images as in the reference, scaled, and at least 2."""
    return max(2, round(3 * min(height, width) / 32))


@MANIPULATIONS.register("poison")
class Poison(Manipulation):
    """poison:FRACTION[:target=T][:patch=P] — FRACTION of the training set triggered and relabelled to T."""

    syntax = "poison:FRACTION[:target=LABEL][:patch=PIXELS]"

    def parse(self, arg: str, options: dict[str, str]) -> dict[str, Any]:
        _no_unknown(options, {"target", "patch"}, "poison")
        fraction = parse_number(arg, "the poisoned fraction")
        if not 0.0 < fraction < 1.0:
            raise UserError(f"poisoned fraction {arg} is outside (0, 1)")
        params: dict[str, Any] = {"fraction": fraction, "target": parse_number(options.get("target", "0"), "target", int)}
        if "patch" in options:
            params["patch"] = parse_number(options["patch"], "patch", int)
        return params

    def canonical(self, params: dict[str, Any]) -> str:
        extra = "".join(f":{k}={params[k]}" for k in ("patch", "target") if k in params and (k, params[k]) != ("target", 0))
        return f"{params['fraction']:g}{extra}"

    def _chosen(self, params: dict[str, Any], dataset: Dataset, seed: int) -> np.ndarray:
        labels = dataset.train.y.cpu().numpy()
        candidates = np.flatnonzero(labels != params["target"])
        count = int(round(params["fraction"] * len(labels)))
        return np.sort(hash_order(candidates, f"unlearn-poison-v1:{seed}")[:count])

    def check(self, params: dict[str, Any], dataset: Dataset) -> None:
        _check_label(params["target"], dataset, "poison target")
        _, h, w = dataset.input_shape
        patch = params.get("patch", default_patch(h, w))
        if not 1 <= patch < min(h, w):
            raise UserError(f"a {patch}×{patch} trigger does not fit {dataset.name}'s {h}×{w} images "
                            f"(use 1 <= patch < {min(h, w)})")
        count = int(round(params["fraction"] * len(dataset.train)))
        others = int((dataset.train.y != params["target"]).sum())
        if not 1 <= count <= others:
            raise UserError(f"poison:{params['fraction']} would poison {count} samples; there are {others} "
                            f"training samples outside the target class {params['target']}")

    def apply(self, params: dict[str, Any], dataset: Dataset, seed: int) -> Manipulated:
        self.check(params, dataset)
        _, h, w = dataset.input_shape
        patch = params.get("patch", default_patch(h, w))
        value = float(dataset.train.x.max())
        chosen = self._chosen(params, dataset, seed)

        def trigger(x: torch.Tensor) -> torch.Tensor:
            x = x.clone()
            x[:, :, h - patch :, w - patch :] = value
            return x

        pos = torch.as_tensor(chosen)
        x, y = dataset.train.x.clone(), dataset.train.y.clone()
        x[pos], y[pos] = trigger(x[pos]), params["target"]
        train = TensorData(x, y, dataset.train.index)
        test = dataset.test.where(dataset.test.y != params["target"])
        triggered = TensorData(trigger(test.x), test.y, test.index)
        splits = {"manip_true": triggered, "manip_target": triggered.with_labels(torch.full_like(test.y, params["target"]))}
        return Manipulated(replace(dataset, train=train), chosen, splits)


@MANIPULATIONS.register("interclass")
class Interclass(Manipulation):
    """interclass:A-B[:fraction=F] — F (default half) of the training samples of classes A and B swap labels."""

    syntax = "interclass:A-B[:fraction=F]"

    def parse(self, arg: str, options: dict[str, str]) -> dict[str, Any]:
        _no_unknown(options, {"fraction"}, "interclass")
        a, sep, b = arg.partition("-")
        if not sep:
            raise UserError(f"interclass needs two classes written A-B, not {arg!r}")
        classes = [parse_number(a, "a class", int), parse_number(b, "a class", int)]
        if classes[0] == classes[1]:
            raise UserError(f"interclass confusion needs two different classes, not {arg}")
        fraction = parse_number(options.get("fraction", "0.5"), "the confused fraction")
        if not 0.0 < fraction <= 1.0:
            raise UserError(f"confused fraction {fraction} is outside (0, 1]")
        return {"classes": classes, "fraction": fraction}

    def canonical(self, params: dict[str, Any]) -> str:
        a, b = params["classes"]
        return f"{a}-{b}" + (f":fraction={params['fraction']:g}" if params["fraction"] != 0.5 else "")

    def check(self, params: dict[str, Any], dataset: Dataset) -> None:
        for label in params["classes"]:
            _check_label(label, dataset, "class")
            if int(round(params["fraction"] * int((dataset.train.y == label).sum()))) < 1:
                raise UserError(f"interclass: class {label} has too few training samples to confuse")

    def apply(self, params: dict[str, Any], dataset: Dataset, seed: int) -> Manipulated:
        self.check(params, dataset)
        a, b = params["classes"]
        labels = dataset.train.y.cpu().numpy()
        y = dataset.train.y.clone()
        swapped = {}
        for src, dst in ((a, b), (b, a)):
            members = np.flatnonzero(labels == src)
            count = int(round(params["fraction"] * len(members)))
            swapped[src] = np.sort(hash_order(members, f"unlearn-interclass-v1:{seed}:{src}")[:count])
            y[torch.as_tensor(swapped[src])] = dst
        chosen = np.sort(np.concatenate([swapped[a], swapped[b]]))
        train = TensorData(dataset.train.x, y, dataset.train.index)
        test = dataset.test.where((dataset.test.y == a) | (dataset.test.y == b))
        other = torch.where(test.y == a, torch.full_like(test.y, b), torch.full_like(test.y, a))
        splits = {"manip_true": test, "manip_target": test.with_labels(other)}
        return Manipulated(replace(dataset, train=train), chosen, splits)
