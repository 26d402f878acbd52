"""A third kind of model plugs into the harness without touching it, and the harness knows none of its kinds.

`Blobs` below is a complete kind defined in this test module: its own data (generated from a seed, not a
registered dataset), its own model (a small MLP on 8 features, not the model zoo), its own splits and the
forget sets it accepts, and a file saved next to every record. It is registered the way a plugin package
registers one (the `unlearn.kinds` registry), and a grid of it runs through the unchanged harness, in this
process and in a worker process that rebuilds it from the pickled plan.
"""

from __future__ import annotations

import ast
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import unlearn.harness as harness_package
from unlearn.data import Dataset, TensorData
from unlearn.errors import UserError
from unlearn.executors import ProcessExecutor
from unlearn.harness import KINDS, Grid, Kind, Workspace, plan_grid
from unlearn.harness.kinds import forget_mask
from unlearn.methods import METHODS
from unlearn.methods.random_label import RandomLabel
from unlearn.models.base import seeded_build
from unlearn.spec import BenchmarkSpec

FEATURES, CLASSES = 8, 3


class BlobsBlueprint:
    """A picklable factory of the toy model: an MLP over the 8 features."""

    def build(self, seed: int, *tags: str, device: torch.device | str = "cpu") -> nn.Module:
        return seeded_build(lambda: nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, CLASSES)),
                            seed, tags, device)


def blobs(seed: int, n: int) -> TensorData:
    """`n` points around three seeded centres, labelled by their centre."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(CLASSES, FEATURES, generator=torch.Generator().manual_seed(1234)) * 3
    y = torch.arange(n) % CLASSES
    return TensorData.of(centres[y] + torch.randn(n, FEATURES, generator=g), y)


class Blobs(Kind):
    """The toy kind: Gaussian blobs generated from a seed, an MLP, random and class-wise forget sets only."""

    forgets = ("random", "class")

    @classmethod
    def load(cls, spec: BenchmarkSpec, workspace: Workspace, device: torch.device) -> Blobs:
        data = Dataset("blobs", blobs(0, 300), blobs(1, 60), blobs(2, 60), ("a", "b", "c"))
        return cls(spec, data, device)

    @classmethod
    def provides(cls, spec: BenchmarkSpec, runs_methods: bool = True) -> set[str]:
        return {"forget", "retain", "val", "test", "oracle", "original"}

    @cached_property
    def blueprint(self) -> BlobsBlueprint:
        return BlobsBlueprint()

    def splits(self, manifest: Any) -> dict[str, TensorData]:
        in_forget = forget_mask(self.train, manifest)
        return {"forget": self.train.where(in_forget), "retain": self.train.where(~in_forget),
                "val": self.val, "test": self.test}

    def artifacts(self, cell: Any, group: Any, evaluation: Any) -> dict[str, str]:
        path = cell.path.with_suffix(".norm.txt")
        path.write_text(f"{sum(float(p.detach().norm()) for p in evaluation.model.parameters()):.6f}\n")
        return {"weight-norm": path.name}


class BlobsRandomLabel(RandomLabel):
    """Random-label forgetting, declared for the toy kind."""

    kinds = ("blobs",)


@pytest.fixture
def blobs_kind():
    """`Blobs` registered as kind `blobs`, with a method for it, for one test."""
    KINDS.register("blobs")(Blobs)
    METHODS.register("blobs-random-label")(BlobsRandomLabel)
    yield
    KINDS.remove("blobs")
    METHODS.remove("blobs-random-label")


def blobs_spec() -> BenchmarkSpec:
    return BenchmarkSpec.model_validate({
        "name": "blobs", "description": "a toy third kind", "kind": "blobs", "dataset": "blobs", "model": "mlp",
        "train": {"epochs": 20, "batch_size": 32, "lr": 0.05}, "metrics": ["accuracy"],
        "gap_metrics": ["UA", "RA", "TA"],
        "grid": {"methods": ["blobs-random-label"], "forget": ["class:1", "random:0.1"], "seeds": [0, 1]},
    })


def test_a_kind_registered_from_outside_the_harness_runs_a_grid(blobs_kind, tmp_path):
    spec = blobs_spec()
    plan = plan_grid(spec, seeds=[0])
    workspace = Workspace.at(tmp_path)
    kind = Blobs.load(spec, workspace, torch.device("cpu"))
    kind.check(plan.forgets, plan.methods)
    result = Grid(plan, kind, workspace).run()
    class_wise, random = result.records
    assert [r.status for r in result.records] == ["ok", "ok"], [r.error for r in result.records]
    assert class_wise.original_metrics["UA"] < 10 < 90 < class_wise.oracle_metrics["UA"]
    assert class_wise.metrics["UA"] > 90  # random labels forgot the class
    for record in result.records:
        saved = (tmp_path / "data/runs").rglob(record.artifacts["weight-norm"])
        assert float(next(saved).read_text()) > 0
        assert record.config["benchmark"] == "blobs" and set(record.models) == {"original", "oracle"}

    again = Grid(plan, kind, workspace, retry_failed=True).run()  # every cell resumes from its record
    assert again.ran == 0 and again.records == result.records


def test_a_worker_process_rebuilds_a_plugin_kind_from_the_plan(blobs_kind, tmp_path):
    spec = blobs_spec()
    plan = plan_grid(spec, forgets=["class:1"], seeds=[0])
    workspace = Workspace.at(tmp_path)
    serial = Grid(plan, Blobs.load(spec, workspace, torch.device("cpu")), workspace).run().records
    pooled_workspace = Workspace.at(tmp_path / "pool", cache_dir=workspace.cache_dir)
    pooled = Grid(plan, Blobs.load(spec, pooled_workspace, torch.device("cpu")), pooled_workspace).run(
        ProcessExecutor(jobs=1)).records
    assert [r.metrics for r in pooled] == [r.metrics for r in serial] and pooled[0].status == "ok"


def test_a_forget_set_or_method_the_kind_cannot_run_is_refused_when_planned(blobs_kind):
    spec = blobs_spec()
    with pytest.raises(UserError, match=r"blobs benchmark 'blobs' takes forget sets random:\.\.\., class:\.\.\., not "
                                        r"'continual:3x1'"):
        plan_grid(spec, forgets=["continual:3x1"])
    with pytest.raises(UserError, match="method 'scrub' unlearns classification models, benchmark 'blobs' is a "
                                        "blobs benchmark; its methods: blobs-random-label"):
        plan_grid(spec, methods=["scrub"])


def test_unlearn_methods_lists_a_method_of_a_third_kind_under_that_kind(blobs_kind, capsys):
    from unlearn.cli import main

    assert main(["methods"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert rows["blobs-random-label"] == "blobs" and rows["scrub"] == "cls" and rows["retrain"] == "cls+gen+lm"


def test_an_unknown_kind_in_a_spec_is_refused_naming_the_known_ones(blobs_kind):
    with pytest.raises(ValueError, match="unknown kind 'clasification' .did you mean classification.*known: "
                                         ".*classification"):
        BenchmarkSpec.model_validate({**blobs_spec().model_dump(), "kind": "clasification"})


def module_imports(source: Path, root: Path) -> set[str]:
    """The `unlearn` modules a module imports when it is imported (not inside functions or TYPE_CHECKING blocks),
    each with the packages above it (importing a module runs its packages' __init__ first)."""
    found: set[str] = set()
    for node in ast.parse(source.read_text()).body:
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unlearn"):
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("unlearn")]
        for name in names:
            parts = name.split(".")
            found.update(".".join(parts[:k]) for k in range(2, len(parts) + 1) if module_file(".".join(parts[:k]), root))
    return found


def module_file(name: str, root: Path) -> Path | None:
    path = root / name.replace(".", "/")
    return next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.exists()), None)


def test_no_harness_module_imports_a_kind_or_sits_on_an_import_cycle():
    root = Path(harness_package.__file__).parents[2]
    modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
               for p in (root / "unlearn").rglob("*.py")}
    graph = {name: {m for m in module_imports(path, root) if not (name == m or name.startswith(f"{m}."))}
             for name, path in modules.items()}  # a module's own packages are imported before it runs
    harness = [name for name in graph if name.startswith("unlearn.harness")]
    assert len(harness) >= 10
    for name in harness:
        assert "unlearn.generation" not in graph[name], name
        seen, stack = set(), list(graph[name])
        while stack:
            current = stack.pop()
            assert current != name, f"{name} imports itself back through {sorted(seen)}"
            if current not in seen:
                seen.add(current)
                stack.extend(graph.get(current, ()))
