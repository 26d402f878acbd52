"""Hostile records cannot inject markup into the leaderboard: what passes validation is escaped, the rest is refused.

A hostile board holds, next to real records, (1) valid records whose free-text fields carry HTML, Markdown and
newline payloads, and (2) files that validation refuses (a payload in the track, device, versions, forget spec or
method name, and a file name with a backtick). Its page must have exactly the element structure of a benign twin
board, where each payload is replaced by plain text; in headless Chromium no payload may run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import FIXTURE_RESULTS

from unlearn.leaderboard.build import regenerate
from unlearn.leaderboard.render import code, text
from unlearn.leaderboard.store import collect

RESULTS = FIXTURE_RESULTS


def payload(tag: str) -> str:
    """Markup that, if it ever became markup, would mark the page's body (and is visible in text form)."""
    return (f"<img src=x onerror=\"document.body.setAttribute('data-pwned','{tag}')\">"
            f"<script>document.body.setAttribute('data-pwned','{tag}')</script>\n# injected heading {tag}\n| x | y |")


ESCAPED = {  # valid records: free-text fields that are rendered, each carrying a payload
    "hparams": lambda d, p: d["hparams"].update(lr=p),
    "origin": lambda d, p: d.update(method_origin=p.replace("\n", " ")),
    "submitter": lambda d, p: d["submission"].update(submitted_by=p.replace("\n", " ")[:100]),
    "column": lambda d, p: (d["config"]["report_metrics"].append(p.replace("\n", " ")[:60]),
                            d["metrics"].update({p.replace("\n", " ")[:60]: 1.0})),
}
REFUSED = {  # fields validated on read: such a record is skipped, named in the page's list of skipped files
    "track": lambda d, p: d.update(track=p),
    "device": lambda d, p: d["env"].update(device=p),
    "python": lambda d, p: d["env"].update(python=p),
    "package": lambda d, p: d["env"]["packages"].update(torch=p),
    "forget": lambda d, p: d["forget"].update(spec="class:3`" + p),
    "method": lambda d, p: d.update(method="finetune\n# heading"),
    "benchmark": lambda d, p: d.update(benchmark=".."),
}


def make_board(root: Path, hostile: bool) -> Path:
    """Copy digits class:3 records of three methods; alter finetune's, and add refused files (see module doc)."""
    results = root / "results" / "digits" / "class_3"
    for method in ("retrain", "finetune", "grad-ascent"):
        shutil.copytree(RESULTS / "digits" / "class_3" / method, results / method)
    files = sorted((results / "finetune").glob("*.json"))
    for name, change in ESCAPED.items():
        for target in files:  # every seed: one hyperparameter configuration, and a column in every row
            data = json.loads(target.read_text())
            change(data, payload(name) if hostile else f"benign | `text` {name}")  # the same escaping path
            target.write_text(json.dumps(data))
    template = json.loads(files[0].read_text())
    for i, (name, change) in enumerate(REFUSED.items()):
        data = json.loads(json.dumps(template))
        if hostile:
            change(data, payload(name))
        else:
            data["track"] = "benign"  # refused just as well
        (results / "grad-ascent" / f"refused-{i}.json").write_text(json.dumps(data))
    odd = "seed9-`<img src=x onerror=alert(1)>`.json" if hostile else "seed9-`benign`.json"
    (results / "grad-ascent" / odd).write_text("[]")
    return root


class Skeleton(HTMLParser):
    """The sequence of start tags with their attribute names: the structure a payload must not change."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, tuple[str, ...]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, tuple(sorted(name for name, _ in attrs))))


def skeleton(html_text: str) -> list[tuple[str, tuple[str, ...]]]:
    parser = Skeleton()
    parser.feed(html_text)
    return parser.tags


@pytest.fixture(scope="module")
def boards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    hostile = make_board(tmp_path_factory.mktemp("hostile"), hostile=True)
    benign = make_board(tmp_path_factory.mktemp("benign"), hostile=False)
    regenerate(hostile)
    regenerate(benign)
    return hostile, benign


def test_refused_fields_skip_their_records_and_escaped_ones_keep_them(boards):
    hostile, benign = boards
    collection = collect(hostile / "results")
    assert len(collection.skipped) == len(REFUSED) + 1
    assert {r.method for r in collection.records} == {"retrain", "finetune", "grad-ascent"}
    assert len(collection.records) == len(collect(benign / "results").records)


def test_no_payload_changes_the_structure_of_the_page_or_the_readme(boards):
    hostile, benign = boards
    page = (hostile / "index.html").read_text()
    assert skeleton(page) == skeleton((benign / "index.html").read_text())
    assert "<script>document" not in page and "<img src=x" not in page and "&lt;img src=x" in page
    ours, twin = ((b / "README.md").read_text().splitlines() for b in boards)
    assert len(ours) == len(twin)
    for mine, theirs in zip(ours, twin, strict=True):  # no new heading, table row or list item
        assert mine[:2] == theirs[:2]
        assert mine.count("|") - mine.count("\\|") == theirs.count("|") - theirs.count("\\|")


def test_escaping_renders_every_character_literally_on_one_line():
    hostile = "a|b`c*d_e[f](javascript:x) <b>&amp;\n# h\r\u2028\u202e"
    assert "\n" not in text(hostile) and "<" not in text(hostile) and "\\|" in text(hostile)
    assert code("finetune") == "`finetune`" and code("a`b").startswith("a\\`b")
    assert len(text("x" * 10_000)) == 300


def test_no_payload_runs_in_a_headless_browser(boards, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("no headless browser installed (Debian: apt-get install chromium)")
    hostile, _ = boards
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", "--dump-dom",
         (hostile / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = skeleton(done.stdout)
    body = next(attrs for tag, attrs in dom if tag == "body")
    assert "data-pwned" not in body  # no payload ran
    assert not [tag for tag, attrs in dom if tag == "script" or any(a.startswith("on") for a in attrs)]
    assert "injected heading" in done.stdout  # the payloads are on the page, as text


def test_the_record_schema_knows_every_track_and_nothing_else():
    from typing import get_args

    from unlearn.methods import Track
    from unlearn.results import TrackName

    assert set(get_args(TrackName)) == {t.value for t in Track}
