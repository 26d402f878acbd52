"""Start-up time of the commands a user types most, against `python -c pass`.

    python scripts/startup.py [--repeats 5]

Each command runs in a fresh interpreter, as from the shell, `--repeats` times; the median wall
time is printed with the interpreter's own start-up subtracted, and whether the command imported
torch or scikit-learn (checked in a separate run that reports `sys.modules` at exit). Targets on an
idle machine: `--help`, an argument error, `unlearn benchmarks` and `unlearn leaderboard --check`
under 1.5 s without torch or scikit-learn; `unlearn methods` under 3 s. Run it from the repository
root (`leaderboard --check` reads ./leaderboard).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS: dict[str, tuple[list[str], float]] = {
    "unlearn --help": (["--help"], 1.5),
    "unlearn run --seeds x (an argument error)": (["run", "--seeds", "x"], 1.5),
    "unlearn benchmarks": (["benchmarks"], 1.5),
    "unlearn leaderboard --check": (["leaderboard", "--check"], 1.5),
    "unlearn methods": (["methods"], 3.0),
}

PROBE = """
import atexit, sys
def report():
    heavy = [m for m in ("torch", "sklearn", "matplotlib") if m in sys.modules]
    sys.__stderr__.write("IMPORTED " + ",".join(heavy) + "\\n")
atexit.register(report)
from unlearn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def imported(args: list[str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=False)
    lines = [line for line in done.stderr.splitlines() if line.startswith("IMPORTED ")]
    return (lines[-1].removeprefix("IMPORTED ") or "neither") if lines else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs per command; the median is reported")
    args = parser.parse_args()
    base = statistics.median(wall([sys.executable, "-c", "pass"]) for _ in range(args.repeats))
    print(f"load average {os.getloadavg()[0]:.1f}; `python -c pass` takes {base:.2f} s (subtracted below)")
    print(f"{'command':<44}{'time':>8}{'target':>9}   imports")
    for label, (argv, target) in COMMANDS.items():
        seconds = statistics.median(wall([sys.executable, "-m", "unlearn", *argv]) for _ in range(args.repeats)) - base
        mark = "ok" if seconds < target else "SLOW"
        print(f"{label:<44}{seconds:>7.2f}s{target:>8.1f}s   {imported(argv)}  {mark}")


if __name__ == "__main__":
    main()
