"""Corrective forget sets: the identified part of the manipulated training samples.

`corrective:poison:0.1:0.25` poisons 10 % of the training set before the original model
trains, and asks to forget a seeded 25 % of the poisoned samples (the part the model owner
found). `corrective:interclass:3-5:1` swaps the labels of half of classes 3 and 5 and
identifies all of them. Options of the manipulation follow as `:key=value`
(`corrective:poison:0.1:0.25:target=7:patch=3`).

The manipulation is drawn from the cell seed, so each seed has its own manipulated data,
original model and oracles; the identified samples for a larger fraction include those of
a smaller one (same seed). The harness trains the cell's original model on the
manipulated data, retrains the oracle without the identified samples (the realistic
oracle every gap is measured to) and a second one without all manipulated samples (the
ideal oracle, recorded as `ideal_oracle_metrics`), and adds the `corrective` metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn.data.base import Dataset
from unlearn.data.manipulations import MANIPULATIONS, Manipulated
from unlearn.errors import UserError
from unlearn.forget.base import BUILDERS, BuildContext, BuiltSet, ForgetBuilder, parse_fraction
from unlearn.hashing import hash_order
from unlearn.registry import did_you_mean


def split_options(fields: list[str], where: str) -> tuple[list[str], dict[str, str]]:
    """Positional fields and the trailing `key=value` options of a colon-separated spec argument."""
    positional = [f for f in fields if "=" not in f]
    if fields[: len(positional)] != positional:
        raise UserError(f"{where}: options (key=value) must come after the positional fields")
    options = dict(f.split("=", 1) for f in fields[len(positional):])
    return positional, options


@BUILDERS.register("corrective")
class CorrectiveForget(ForgetBuilder):
    """corrective:MANIPULATION:ARG:IDENTIFIED — an identified fraction of the samples a manipulation changed."""

    extra_metrics = ("corrective",)
    protocol = "corrective"
    syntax = ("corrective:poison:FRACTION:IDENTIFIED or corrective:interclass:A-B:IDENTIFIED "
              "(0 < IDENTIFIED <= 1; options :target=T :patch=P for poison, :fraction=F for interclass)")

    def parse(self, arg: str) -> dict[str, Any]:
        where = f"corrective:{arg}"
        positional, options = split_options(arg.split(":"), where)
        if len(positional) != 3:
            raise UserError(f"malformed forget spec {where!r}: write {self.syntax}")
        kind, manip_arg, identified = positional
        if kind not in MANIPULATIONS.names():
            raise UserError(f"unknown manipulation {kind!r} in {where!r}{did_you_mean(kind, MANIPULATIONS.names())}; "
                            f"use {', '.join(MANIPULATIONS.names())}")
        fraction = parse_fraction(identified, f"{where}: the identified fraction", closed=True)
        return {"manipulation": kind, "args": MANIPULATIONS.get(kind)().parse(manip_arg, options), "identified": fraction}

    def canonical(self, params: dict[str, Any]) -> str:
        manipulation = MANIPULATIONS.get(params["manipulation"])()
        head, _, options = manipulation.canonical(params["args"]).partition(":")
        return f"{params['manipulation']}:{head}:{params['identified']:g}" + (f":{options}" if options else "")

    def check(self, params: dict[str, Any], dataset: Dataset) -> None:
        MANIPULATIONS.get(params["manipulation"])().check(params["args"], dataset)

    def manipulation_key(self, params: dict[str, Any]) -> str:
        return f"{params['manipulation']}:{MANIPULATIONS.get(params['manipulation'])().canonical(params['args'])}"

    def manipulation(self, params: dict[str, Any], dataset: Dataset, seed: int) -> Manipulated:
        return MANIPULATIONS.get(params["manipulation"])().apply(params["args"], dataset, seed)

    def build(self, params: dict[str, Any], context: BuildContext) -> BuiltSet:
        manipulated = self.manipulation(params, context.dataset, context.seed).indices
        count = max(1, int(round(params["identified"] * len(manipulated))))
        order = hash_order(manipulated, f"unlearn-corrective-identified-v1:{context.seed}")
        return BuiltSet(np.sort(order[:count]), provenance={"manipulated": len(manipulated), "identified": count})
