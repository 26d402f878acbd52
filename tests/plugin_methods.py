"""Third-party-style methods used by the tests through `module:Class` and entry points."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass

import torch
from torch import nn

from unlearn.methods import Method, Track, UnlearnRequest
from unlearn.methods.base import AnyReal, PositiveFloat

SEEN: list[UnlearnRequest] = []


class NanWeights(Method):
    """Returns a model whose weights are NaN (a method that diverged without a NaN loss)."""

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        with torch.no_grad():
            for p in request.model.parameters():
                p.fill_(float("nan"))
        return request.model


class FreshModel(Method):
    """Returns a freshly initialised model: finite weights that have forgotten everything (a collapse, not a NaN)."""

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        return request.new_model()


class Boom(Method):
    """Raises an ordinary exception."""

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        raise RuntimeError("kaboom")


class WrongShape(Method):
    """Returns a model with an extra output class."""

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        model = request.model
        model.head = nn.Linear(model.head.in_features, request.num_classes + 1)
        return model


@dataclass(frozen=True)
class SpyHParams:
    scale: PositiveFloat = 1.0


class Spy(Method):
    """Records the request it receives and returns the model unchanged."""

    HParams = SpyHParams

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        SEEN.append(request)
        return request.model


class ForgetOnlySpy(Spy):
    """A spy on the forget-only track."""

    @property
    def track(self) -> Track:
        return Track.FORGET_ONLY


class NotAMethod:
    """Something that is not a Method subclass."""


DATA_FREE_SEEN: list[UnlearnRequest] = []


class DataFreeProbe(Method):
    """Records what a data-free method is handed, and returns the model unchanged."""

    kinds = ("generation",)

    @property
    def track(self) -> Track:
        return Track.DATA_FREE

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        DATA_FREE_SEEN.append(request)
        return request.model


@dataclass(frozen=True)
class FailWhileMarkerHParams:
    marker: str = ""


class FailWhileMarker(Method):
    """Raises OSError (disk full, inside the method) while the file `marker` exists, else returns the model unchanged."""

    HParams = FailWhileMarkerHParams

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        marker = self.hparams.marker
        if marker and os.path.exists(marker):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), marker)
        return request.model


class KillsItsProcess(Method):
    """Ends the process it runs in at once (os._exit), as a segfault or the OOM killer would: for executor tests only."""

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        os._exit(3)


@dataclass(frozen=True)
class GateHParams:
    calls: str = ""
    go: str = ""


class Gate(Method):
    """Appends its process id to the file `calls`, then waits (a minute at most) for the file `go` to exist and returns
    the model unchanged: holds a cell open while a test starts a second run."""

    HParams = GateHParams

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        with open(self.hparams.calls, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        deadline = time.monotonic() + 60
        while not os.path.exists(self.hparams.go) and time.monotonic() < deadline:
            time.sleep(0.05)
        return request.model


@dataclass(frozen=True)
class HeadZeroHParams:
    bias: AnyReal = -10.0  # a logit bias: any finite number


class HeadZero(Method):
    """The head-only cheat of issue 19: zero each forgotten class's row of the linear head and set its bias to
    `bias`, leaving every feature untouched. The class is hidden behind the head, not forgotten: a probe on the
    features, or a few relearning steps, find it again."""

    HParams = HeadZeroHParams

    @property
    def track(self) -> Track:
        return Track.DATA_FREE

    def unlearn(self, request: UnlearnRequest) -> nn.Module:
        head = request.model.head
        with torch.no_grad():
            for c in request.forget_classes:
                head.weight[c].zero_()
                head.bias[c] = self.hparams.bias
        return request.model
