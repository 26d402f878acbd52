"""Replay a sweep of hostile and broken inputs against the `unlearn` command and report what happened.

Each input runs as its own `python -m unlearn ...` process in a fresh sandbox folder, under a time limit,
and is classified:
- clear: a one-line `unlearn: error:` and exit 2 (or, for `leaderboard`, exit 0 with the bad file named and
  skipped, or the payload shown as text);
- traceback: a Python traceback, or an exit by a signal or with another code;
- hang: still running at the time limit;
- unexpected: none of these (e.g. exit 0 where an error was due);
- stray files: files created or changed in the sandbox other than the case's declared outputs (records written
  outside data/runs, a result or manifest written before the error, a file a payload tried to create);
- page scripts: leaderboard pages where headless Chromium found a payload's mark, a script element or an
  event-handler attribute (skipped, and said, when no Chromium is installed).
The sweep passes when tracebacks, hangs, stray files and page scripts are all zero.

    python scripts/hostile_sweep.py [--jobs 2] [--timeout 120] [--only SUBSTRING] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_inputs import MARK, REPO, Case, cases  # noqa: E402  (found through the line above)


@dataclass
class Outcome:
    case: Case
    code: int | None
    seconds: float
    stderr: str
    kind: str = ""
    stray: list[str] = field(default_factory=list)
    page: str | None = None


# -- running and judging -----------------------------------------------------------------------------------------

def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def run_case(number: int, case: Case, sandbox: Path, timeout: float) -> Outcome:
    """Run `case` in its own folder; a write outside `work/` (a path escaping it) shows up in the folder above."""
    root = sandbox / f"case-{number:03d}"
    work = root / "work"
    work.mkdir(parents=True)
    if case.setup is not None:
        case.setup(work)
    before = snapshot(root)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "UNLEARN_BENCHMARK_PATH": ""}
    try:
        done = subprocess.run([sys.executable, "-m", "unlearn", *case.command], cwd=work, env=env,
                              capture_output=True, text=True, timeout=timeout, errors="replace")
        outcome = Outcome(case, done.returncode, time.perf_counter() - start, done.stderr)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        outcome = Outcome(case, None, time.perf_counter() - start, err, kind="hang")
    after = snapshot(root)
    prefix = "work/"
    outcome.stray = sorted(
        name for name, stamp in after.items() if before.get(name) != stamp
        and not any(fnmatch(name.removeprefix(prefix), pattern) for pattern in case.outputs if name.startswith(prefix))
    )
    if not outcome.kind:
        outcome.kind = judge(outcome)
    page = work / "board" / "index.html"
    if case.command[0] == "leaderboard" and page.is_file():
        outcome.page = page_scripts(page, root)
    return outcome


def judge(outcome: Outcome) -> str:
    err, code = outcome.stderr, outcome.code
    if "Traceback (most recent call last)" in err or code not in (0, 2):
        return "traceback"
    lines = [line for line in err.splitlines() if line.strip()]
    if outcome.case.expect == "error":
        ok = code == 2 and len(lines) == 1 and lines[0].startswith("unlearn") and "error" in lines[0]
    elif outcome.case.expect == "skip":
        ok = code == 0 and any(line.startswith("unlearn: skipped") for line in lines)
    else:  # shown
        ok = code == 0
    return "clear" if ok else "unexpected"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = [name for name, _ in attrs]
        if tag == "script" or any(n.startswith("on") for n in names) or MARK in names:
            self.found.append(tag)


def page_scripts(page: Path, scratch: Path) -> str | None:
    """'' when Chromium found nothing run or injected in `page`, a description otherwise, None without Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        return None
    try:
        done = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", f"--user-data-dir={scratch / 'chromium'}", "--virtual-time-budget=3000", "--dump-dom",
             page.as_uri()],
            capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:  # seen only on pages where an injected element was loading
        return "chromium timed out"
    tags = _Tags()
    tags.feed(done.stdout)
    if done.returncode != 0 or "<body" not in done.stdout:
        return f"chromium failed ({done.returncode})"
    return ", ".join(tags.found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="cases at a time (default 2)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as a hang")
    parser.add_argument("--only", help="run only the cases whose name holds this text")
    parser.add_argument("--keep", type=Path, help="keep the sandbox in this folder (default: a temporary one)")
    args = parser.parse_args(argv)
    chosen = [c for c in cases() if args.only is None or args.only in c.name]
    sandbox = Path(tempfile.mkdtemp(prefix="unlearn-sweep-")) if args.keep is None else args.keep
    sandbox.mkdir(parents=True, exist_ok=True)
    print(f"{len(chosen)} hostile inputs, {args.jobs} at a time, {args.timeout:.0f} s each at most; sandbox {sandbox}",
          file=sys.stderr)
    start = time.perf_counter()
    watched = {name: snapshot(REPO / name) for name in ("leaderboard", "benchmarks", "scripts", "data", "unlearn")}
    with ThreadPoolExecutor(args.jobs) as pool:
        outcomes = list(pool.map(lambda nc: run_case(*nc, sandbox, args.timeout), enumerate(chosen)))
    outside = [f"{name}/{path}" for name, before in watched.items() for path, stamp in snapshot(REPO / name).items()
               if before.get(path) != stamp and "__pycache__" not in path]
    outside += [p.name for p in sandbox.iterdir() if not p.name.startswith("case-")]
    for o in outcomes:
        flags = [o.kind] + (["stray: " + ", ".join(o.stray[:3])] if o.stray else []) + (
            [f"page: {o.page}"] if o.page else [])
        last = (o.stderr.strip().splitlines() or [""])[-1][:150]
        print(f"{' '.join(flags):<12} exit {o.code!s:>4} {o.seconds:6.1f}s  {o.case.name[:60]:<60}  {last}")
    count = lambda kind: sum(o.kind == kind for o in outcomes)  # noqa: E731
    pages = [o for o in outcomes if o.case.command[0] == "leaderboard"]
    checked = [o for o in pages if o.page is not None]
    totals = {
        "inputs": len(outcomes),
        "clear errors, exit 2": sum(o.kind == "clear" and o.code == 2 for o in outcomes),
        "bad files named and skipped, exit 0": sum(o.kind == "clear" and o.case.expect == "skip" for o in outcomes),
        "payloads shown as text, exit 0": sum(o.kind == "clear" and o.case.expect == "shown" for o in outcomes),
        "unexpected": count("unexpected"),
        "tracebacks": count("traceback"),
        "hangs": count("hang"),
        "files written where they should not be": sum(bool(o.stray) for o in outcomes) + len(outside),
        "scripts executed in the page": sum(bool(o.page) for o in checked),
    }
    print(f"\nsweep finished in {time.perf_counter() - start:.0f} s")
    for key, value in totals.items():
        print(f"  {key:<40} {value}")
    if outside:
        print(f"  written outside the cases' folders: {', '.join(outside[:5])}")
    if pages and not checked:
        print("  (no Chromium installed: the pages were not opened; Debian: apt-get install chromium)")
    if args.keep is None:
        shutil.rmtree(sandbox, ignore_errors=True)
    bad = totals["tracebacks"] + totals["hangs"] + totals["files written where they should not be"]
    return 1 if bad + totals["scripts executed in the page"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
