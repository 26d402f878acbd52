"""Run a grid of (method × forget set × seed) cells of one benchmark, resumably.

Per seed and forget set: the manifest is loaded or built, the forget set's protocol is bound
(`unlearn.harness.protocols`), and its group is prepared once: the original model and the oracle
(the `retrain` method's cached output) loaded or trained and both scored. Then each method gets a
request holding only what its track grants. Each cell ends as one JSON record whose path is keyed by
the hash of the cell's config, so a rerun skips finished cells (a record there counts only if it is the
cell's own, see `unlearn.claims`). Executors (`unlearn.executors`) run the groups here or in workers.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from unlearn.claims import not_this_cells
from unlearn.errors import Diverged, StorageError
from unlearn.forget import ForgetManifest, ForgetSpec
from unlearn.harness.cells import Cell, CellGroup, GridResult
from unlearn.harness.models import Models
from unlearn.harness.protocols import PROTOCOLS, Protocol, bind_protocol
from unlearn.hashing import stable_hash
from unlearn.locks import sweep_stale
from unlearn.methods import hparams_dict
from unlearn.metrics import gaps
from unlearn.metrics.base import gaps_left_out, undefined_keys
from unlearn.progress import progress_bar
from unlearn.provenance import environment
from unlearn.results import InvalidRecord, ResultRecord, read_record, record_dir, record_path

if TYPE_CHECKING:
    from unlearn.executors import Executor
    from unlearn.harness.kinds import Kind
    from unlearn.harness.plan import GridPlan, MethodChoice
    from unlearn.harness.workspace import Workspace


class Grid:
    """Executes a GridPlan on a benchmark kind's data, writing one record per cell into the workspace."""

    def __init__(
        self,
        plan: GridPlan,
        kind: Kind,
        workspace: Workspace,
        *,
        progress: bool = False,
        log: Callable[[str], None] | None = None,
        retry_failed: bool = False,
    ):
        self.plan = plan
        self.kind = kind if kind.spec == plan.spec else kind.with_spec(plan.spec)
        self.spec = plan.spec
        self.workspace = workspace
        self.models = Models(self.kind, workspace, progress)
        self.progress = progress
        self.log = log or (lambda _msg: None)
        self.warn = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
        self.retry_failed = retry_failed
        self.env = environment(self.kind.device)
        self._bound: dict[tuple[Any, ...], Protocol] = {}

    # -- groups ------------------------------------------------------------------------------------

    def protocol_for(self, forget: ForgetSpec, seed: int) -> Protocol:
        """The forget set's protocol bound for its cells of `seed` (shared by cells with the same binding key; one
        binding that holds its own copy of the data, a corrective set's, is kept at a time)."""
        cls = PROTOCOLS.get(forget.builder.protocol)
        key = cls.binding_key(forget, seed)
        if key not in self._bound:
            if cls.holds_data:
                self._bound = {k: p for k, p in self._bound.items() if not p.holds_data}
            self._bound[key] = bind_protocol(self.models, forget, seed)
        return self._bound[key]

    def prepare_group(self, forget: ForgetSpec, manifest: ForgetManifest, seed: int) -> tuple[Protocol, CellGroup]:
        """Set the group of (forget set, seed) up: its protocol and its prepared group, whose oracles passed their check
        (`Protocol.ready`; an undertrained one stops the run with a UserError before any cell of the group runs)."""
        protocol = self.protocol_for(forget, seed)
        return protocol, protocol.ready(forget, manifest, seed)

    # -- cells -------------------------------------------------------------------------------------

    def cell(self, method: MethodChoice, forget: ForgetSpec, manifest: ForgetManifest, seed: int) -> Cell:
        """Describe one cell; its config determines its result, and its hash names the record file."""
        protocol = self.protocol_for(forget, seed)
        config = {
            **protocol.scoring.config(),
            "method": method.name,
            "method_origin": method.origin,
            "hparams": hparams_dict(method.hparams),
            "track": protocol.track_of(method, manifest),
            "forget": forget.text,
            "forget_sha256": manifest.sha256,
            "seed": seed,
        }
        config_hash = stable_hash(config)
        path = record_path(self.workspace.results_dir, self.spec.name, method.name, forget.text, seed, config_hash)
        return Cell(method, forget, manifest, seed, config, config_hash, path)

    def finished(self, cell: Cell, quiet: bool = False) -> ResultRecord | None:
        """The cell's stored record if it counts as done (valid, the cell's own, and not failed under
        --retry-failed); `quiet` leaves out the warnings about a record that is not (already given)."""
        if not cell.path.exists():
            return None
        try:
            record = read_record(cell.path)
            problem = not_this_cells(record, cell)
        except InvalidRecord as exc:
            record, problem = None, f"warning: {exc}"
        if problem is not None:
            if not quiet:
                self.warn(f"{problem}; running the cell again")
            return None
        if record.status == "failed" and self.retry_failed:
            return None
        return record

    def execute(self, protocol: Protocol, cell: Cell, group: CellGroup) -> ResultRecord:
        """Run one cell's method and score it; any exception becomes a failed record."""
        summary = group.summary()
        try:
            outcome = protocol.outcome(cell, group)
            undefined = undefined_keys(outcome.scores)
            left_out = gaps_left_out(self.spec.gap_metrics, undefined, summary.undefined.get("oracle", {}))
            return ResultRecord.for_cell(cell, summary, self.env, outcome=outcome, undefined=undefined,
                                         gaps=gaps(outcome.scores.values, group.oracle_metrics, self.spec.gap_metrics),
                                         gaps_left_out=left_out)
        except StorageError:  # a full or read-only disk stops the run (finished records are kept)
            raise
        except Exception as exc:  # a method's failure is a result, not a crash of the grid
            reason = f"diverged: {exc}" if isinstance(exc, Diverged) else f"{type(exc).__name__}: {exc}"
            return ResultRecord.for_cell(cell, summary, self.env, error=reason.splitlines()[0] if reason else
                                         type(exc).__name__, traceback=traceback.format_exc())

    # -- the grid ----------------------------------------------------------------------------------

    def run(self, executor: Executor | None = None) -> GridResult:
        """Run every cell not already finished with `executor` (default: serially, here); return all the grid's
        records in grid order.

        Lock files nobody holds (left by a run killed with SIGKILL) are removed from the model cache and the grid's
        results directories first. Forget-set manifests are built here, before any cell runs. The unfinished cells
        of each (forget set, seed) group go to the executor as one unit, listed just before the executor asks for
        them.
        """
        from unlearn.executors import SerialExecutor, WorkUnit

        executor = executor or SerialExecutor()
        result = GridResult()
        plan = self.plan
        sweep_stale(self.workspace.cache_dir)
        for forget in plan.forgets:
            for method in plan.methods:
                sweep_stale(record_dir(self.workspace.results_dir, self.spec.name, method.name, forget.text), False)
        manifests = {
            (seed, forget.text): self.models.build_manifest(forget, seed) for seed in plan.seeds for forget in plan.forgets
        }
        for seed in plan.seeds:
            for forget in plan.forgets:  # a split too small for a metric is refused before anything trains
                self.protocol_for(forget, seed).kind.check_splits(manifests[(seed, forget.text)])
        bar = progress_bar(total=plan.size, desc=self.spec.name, unit="cell", disable=not self.progress)
        records: list[ResultRecord | None] = [None] * plan.size
        labels: list[str] = []

        def where(position: int) -> str:
            return f"[{position + 1}/{plan.size}] {labels[position]}"

        def units() -> Iterator[WorkUnit]:
            for seed in plan.seeds:
                for forget in plan.forgets:
                    manifest = manifests[(seed, forget.text)]
                    cells, positions = [], []
                    for method in plan.methods:
                        position = len(labels)
                        cell = self.cell(method, forget, manifest, seed)
                        labels.append(f"{cell.method.name} · {forget.text} · seed {seed}")
                        record = self.finished(cell)
                        if record is None:
                            cells.append(cell)
                            positions.append(position)
                            continue
                        records[position] = record
                        result.reused += 1
                        self.log(f"{where(position)}: reused {cell.path}")
                        bar.update(1)
                    if cells:
                        yield WorkUnit(forget, seed, manifest, tuple(cells), tuple(positions))

        for done in executor.run(self, units()):
            records[done.position] = done.record
            result.ran += not done.reused
            result.reused += done.reused
            bar.set_postfix_str(labels[done.position])
            how = "reused, written by another run: " if done.reused else ""
            self.log(f"{where(done.position)}: {how}{describe(done.record)}")
            bar.update(1)
        bar.close()
        missing = [labels[i] for i, r in enumerate(records) if r is None]
        if missing:  # an executor's bug, never a method's
            raise RuntimeError(f"{executor.name} executor returned no record for {', '.join(missing)}")
        result.records = [r for r in records if r is not None]
        return result


def describe(record: ResultRecord) -> str:
    """A one-line summary of a record for logs: its gap metrics, Avg. Gap and run time."""
    if record.status == "failed":
        return f"FAILED ({record.error})"
    values = " ".join(f"{k} {v:.1f}" for k, v in record.metrics.items() if k in record.gaps and k != "Avg. Gap")
    return f"{values} gap {record.gaps['Avg. Gap']:.2f} in {record.run_time_s:.2f}s"
