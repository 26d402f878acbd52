"""Write constraints.txt: the exact installed versions of everything unlearn and its dev extra need, transitively.

Run it in the environment the leaderboard's records are made in (after `pip install -e ".[dev]"`):

    python .ci/pin_constraints.py            # rewrite constraints.txt at the repository root
    python .ci/pin_constraints.py --check    # exit 1 if constraints.txt is not what this environment gives

It walks pyproject.toml's dependencies and the dev extra through the installed distributions' own
requirements (with their markers and extras evaluated here), so tools installed next to unlearn that
it does not need stay out. unlearn itself is left out.
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("dev",)
HEADER = """\
# Exact versions for reproducing the leaderboard: pip install -e ".[dev]" -c constraints.txt
# pyproject.toml keeps loose ranges for library users; this file pins the environment the committed
# records are made in (Python {python}): every dependency of unlearn and its dev extra, transitively.
# Regenerate in that environment with: python .ci/pin_constraints.py
"""


def project_requirements() -> list[Requirement]:
    """The project's dependencies and those of the extras in EXTRAS, as pyproject.toml lists them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    texts = [*project["dependencies"], *(r for extra in EXTRAS for r in project["optional-dependencies"][extra])]
    return [Requirement(text) for text in texts]


def closure(roots: list[Requirement]) -> dict[str, str]:
    """Installed distribution name -> version for `roots` and everything they require here, transitively."""
    pinned: dict[str, tuple[str, str, frozenset[str]]] = {}  # canonical name -> (name, version, extras walked)
    todo = list(roots)
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            raise SystemExit(f"pin_constraints: {req.name} is required ({req}) but not installed; install it first") from None
        walked = pinned.get(key, (None, None, frozenset()))[2]
        extras = walked | set(req.extras)
        if key in pinned and extras == walked:
            continue
        pinned[key] = (dist.metadata["Name"], dist.version, frozenset(extras))
        environments = [{"extra": e} for e in sorted(extras)] or [{"extra": ""}]
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate(env) for env in environments):
                todo.append(sub)
    pinned.pop("unlearn", None)
    return {name: version for name, version, _ in pinned.values()}


def render(pins: dict[str, str]) -> str:
    python = ".".join(str(p) for p in sys.version_info[:3])
    lines = [f"{name}=={version}" for name, version in sorted(pins.items(), key=lambda kv: canonicalize_name(kv[0]))]
    return HEADER.format(python=python) + "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render(closure(project_requirements()))
    target = ROOT / "constraints.txt"
    if "--check" in argv:
        same = target.is_file() and target.read_text(encoding="utf-8") == text
        print(f"pin_constraints: {target} is {'up to date' if same else 'not what this environment gives'}")
        return 0 if same else 1
    target.write_text(text, encoding="utf-8")
    print(f"pin_constraints: wrote {len(text.splitlines()) - HEADER.count(chr(10))} pins to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
