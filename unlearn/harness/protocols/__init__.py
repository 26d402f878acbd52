"""Forget protocols: how a forget set's cells are run (`ForgetBuilder.protocol` names one).

- `single`: one unlearning call from the cell's original model, scored against the oracle;
- `corrective`: the same on manipulated data, with an ideal oracle retrained without every manipulated sample;
- `continual`: a sequence of tasks, each unlearned from the previous task's output.

A plugin package adds a protocol as an entry point of the `unlearn.protocols` group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlearn.harness.protocols.base import Protocol
from unlearn.registry import Registry

if TYPE_CHECKING:
    from unlearn.forget import ForgetSpec
    from unlearn.harness.models import Models

PROTOCOLS: Registry[type[Protocol]] = Registry("protocol", entry_point_group="unlearn.protocols")
"""A forget builder's `protocol` -> the Protocol class that runs its cells."""
PROTOCOLS.declare("single", "unlearn.harness.protocols.single:Single")
PROTOCOLS.declare("corrective", "unlearn.harness.protocols.corrective:Corrective")
PROTOCOLS.declare("continual", "unlearn.harness.protocols.continual:Continual")


def bind_protocol(models: Models, forget: ForgetSpec, seed: int) -> Protocol:
    """The protocol of `forget`'s builder, bound for its cells of `seed` on `models`."""
    return PROTOCOLS.get(forget.builder.protocol).bind(models, forget, seed)


__all__ = ["PROTOCOLS", "Protocol", "bind_protocol"]
