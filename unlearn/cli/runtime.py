"""From parsed options to what a command runs with: the device and threads, the workspace, the tuned overlay."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def overlaid(args: argparse.Namespace, spec: Any) -> Any:
    """The spec with the tuned-value overlay (--hparams-file, or the workdir's) merged in; says which file it used."""
    from unlearn.overlay import with_overlay

    spec, path = with_overlay(spec, args.workdir, args.hparams_file)
    if path is not None:
        print(f"unlearn: tuned hyperparameters from {path} (merged over the spec's)", file=sys.stderr)
    return spec


def runtime(args: argparse.Namespace, spec: Any) -> tuple[Any, Any, bool]:
    """Resolve the device, set torch's threads, and check the workspace: (device, workspace, progress)."""
    from unlearn.device import configure_threads, resolve_device
    from unlearn.harness import Workspace
    from unlearn.shipped import FORGET_SETS, shipped_dir

    device = resolve_device(args.device)
    configure_threads(device, args.threads or spec.cpu_threads)
    workspace = Workspace.at(
        args.workdir,
        results_dir=getattr(args, "results_dir", None),
        cache_dir=args.cache_dir,
        data_root=args.data_root,
        download=args.download,
        committed_forget_dir=shipped_dir(FORGET_SETS),
    )
    workspace.check_writable()
    return device, workspace, args.progress
