"""One generic registry: a decorator for built-ins, entry points for plugins, `module:Name` on the CLI."""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from unlearn.errors import UserError

T = TypeVar("T")


def did_you_mean(name: str, candidates: list[str]) -> str:
    """Return ' (did you mean a, b?)' for the closest candidates, or '' when none is close."""
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def summary(obj: object) -> str:
    """The first line of an object's docstring, for one-line listings."""
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


class Registry(Generic[T]):
    """Named components of one kind (methods, metrics, datasets, ...).

    Lookup order: names registered with the `register` decorator or declared with `declare` (a built-in
    whose module is imported on first use); names published by installed packages in the entry-point
    group; and, when `import_paths` is set, a `package.module:Name` path imported on demand, so a third
    party never forks the repo.
    """

    def __init__(self, kind: str, *, entry_point_group: str | None = None, import_paths: bool = False):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.import_paths = import_paths
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._declared: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering a built-in component under `name`."""

        def decorate(obj: T) -> T:
            if name in self._items or name in self._declared:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            self._origins[name] = "builtin"
            return obj

        return decorate

    def declare(self, name: str, path: str) -> None:
        """Register the built-in `name` as the import path `package.module:Name`, imported when first looked up
        (so that listing or validating names imports nothing)."""
        if name in self._items or name in self._declared:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._declared[name] = path
        self._origins[name] = "builtin"

    def remove(self, name: str) -> None:
        """Forget `name` (a component registered for a while, e.g. by a test)."""
        for table in (self._items, self._declared, self._origins):
            table.pop(name, None)

    def _entry_points(self) -> dict[str, EntryPoint]:
        if self.entry_point_group is None:
            return {}
        return {ep.name: ep for ep in entry_points(group=self.entry_point_group)}

    def names(self) -> list[str]:
        """All names available without an import path: built-ins and installed plugins."""
        listed = {name for name, origin in self._origins.items() if origin != "import-path"}  # not ones resolved
        return sorted(listed | set(self._entry_points()))

    def knows(self, name: str) -> bool:
        """Whether `name` is registered, declared or published by an installed package (importing nothing)."""
        return name in self._items or name in self._declared or name in self._entry_points()

    def builtin_names(self) -> list[str]:
        """The names registered by this package itself (not installed plugins, not import paths)."""
        return sorted(name for name, origin in self._origins.items() if origin == "builtin")

    def origin(self, name: str) -> str:
        """Where `name` came from: 'builtin', 'entry-point <dist> <version>' or 'import-path'."""
        self.get(name)
        return self._origins[name]

    def get(self, name: str) -> T:
        """Resolve `name`, or raise UserError naming the closest known names."""
        if name in self._items:
            return self._items[name]
        if name in self._declared:
            self._items[name] = self._import(self._declared.pop(name))
            return self._items[name]
        ep = self._entry_points().get(name)
        if ep is not None:
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin is the user's to fix, in one line
                raise UserError(f"{self.kind} {name!r} from entry point {ep.value!r} failed to load: {exc}") from None
            dist = f" {ep.dist.name} {ep.dist.version}" if ep.dist is not None else ""
            return self._remember(name, obj, f"entry-point{dist}")
        if self.import_paths and ":" in name:
            return self._remember(name, self._import(name), "import-path")
        hint = did_you_mean(name, self.names())
        raise UserError(f"unknown {self.kind} {name!r}{hint}; `unlearn {self.kind}s` lists them")

    def _remember(self, name: str, obj: T, origin: str) -> T:
        self._items[name] = obj
        self._origins[name] = origin
        return obj

    def _import(self, path: str) -> T:
        module_name, _, attr = path.partition(":")
        if not module_name or not attr:
            raise UserError(f"{self.kind} {path!r}: an import path looks like package.module:Name")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise UserError(f"{self.kind} {path!r}: cannot import {module_name!r}: {exc}") from None
        try:
            return getattr(module, attr)
        except AttributeError:
            raise UserError(f"{self.kind} {path!r}: module {module_name!r} has no attribute {attr!r}") from None
