"""Long work reports progress in a log file too: a timestamped line at least every HEARTBEAT_S seconds."""

from __future__ import annotations

import io
import re
import time

import pytest

import unlearn.progress as progress
from unlearn.cli import build_parser
from unlearn.train import train_with_recipe


class Log(io.StringIO):
    """A file, as stderr is when a cluster job writes its log: not a terminal."""

    def isatty(self) -> bool:
        return False


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] (?P<what>.+)$")


@pytest.fixture
def quick(monkeypatch) -> float:
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.2)
    return 0.2


def test_a_phase_in_a_log_prints_lines_even_between_updates(quick):
    log = Log()
    bar = progress.progress_bar(total=3, desc="training original (seed 0)", unit="epoch", file=log)
    bar.update()
    time.sleep(6 * quick)  # one slow step: no update for several heartbeats
    bar.update(2)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) >= 3, lines
    assert all(LINE.match(line) for line in lines), lines
    assert all("training original (seed 0)" in line for line in lines)
    assert "1/3" in lines[0] and "3/3" in lines[-1]  # how far along, and the end


def test_a_short_phase_prints_nothing(quick):
    log = Log()
    for _ in progress.progress_bar(range(5), desc="cells", file=log):
        pass
    assert log.getvalue() == ""


def test_a_terminal_gets_a_redrawn_bar_and_no_progress_gets_nothing(quick):
    screen = Terminal()
    for _ in progress.progress_bar(range(2), desc="cells", file=screen):
        time.sleep(quick)
    assert "\r" in screen.getvalue() and "[" not in screen.getvalue().split("cells")[0]
    log = Log()
    for _ in progress.progress_bar(range(2), desc="cells", file=log, disable=True):
        time.sleep(2 * quick)
    assert log.getvalue() == ""


def test_run_reports_progress_unless_told_not_to():
    parser = build_parser()
    assert parser.parse_args(["run"]).progress is True
    assert parser.parse_args(["run", "--no-progress"]).progress is False
    assert parser.parse_args(["reproduce"]).progress is True


def test_training_an_original_model_heartbeats_into_a_log(quick, monkeypatch, digits_kind, digits_spec, capsys):
    """The training loop reports through the same bar: a log sees what trains and how far it got."""
    from unlearn.models import build_model

    monkeypatch.setattr(progress, "on_terminal", lambda stream=None: False)
    model = build_model("small-cnn", 1, (8, 8), 10, (0.3,), (0.4,))
    recipe = digits_spec.train.model_copy(update={"epochs": 4})
    train_with_recipe(model, digits_kind.dataset.train, recipe, seed=0, progress="training original (seed 0)")
    lines = [line for line in capsys.readouterr().err.splitlines() if "training original (seed 0)" in line]
    assert len(lines) >= 2 and all(LINE.match(line) for line in lines), lines
    assert "4/4" in lines[-1]  # and the last line says the phase finished
