"""The recipe registry: a name plus JSON options that rebuild a figure from a model and inputs.

A recipe is what makes an export reproducible: the sidecar stores the recipe's name, its
options, the model reference and the input references, and ``python -m explorer reproduce``
calls the same builder again.  Exports *always* go through a recipe (also from the widgets),
so the exported file and the reproduced file come from the same code path.

Adding a view = one builder function registered with :func:`recipe`, with a default and a
schema (type and range) for each option.  Builders take ``(adapter, images, options)`` where
``images`` is a list of :class:`explorer.LoadedImage` and return a plotly figure.

Options come from sidecars that other people wrote, so every option is checked against its
schema before a builder runs (:func:`options_for`): numbers have ranges, lists and texts have
lengths, names come from fixed lists, and paths to stored inputs are relative and stay inside
the figure's folder (:func:`input_path`).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


# ---------------------------------------------------------------------------------------------- option schemas
def _show(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:50] + f"… ({len(r)} characters)"


class Spec:
    """The type and range of one value; :meth:`check` raises ``ValueError`` naming ``where``."""

    none: bool = False

    def describe(self) -> str:
        raise NotImplementedError

    def _ok(self, value) -> bool:
        raise NotImplementedError

    def check(self, value, where: str) -> None:
        if value is None and self.none:
            return
        if value is None or not self._ok(value):
            raise ValueError(f"{where} must be {self.describe()}{' or null' if self.none else ''}, got {_show(value)}.")
        self._check_items(value, where)

    def _check_items(self, value, where: str) -> None:
        pass


@dataclass(frozen=True)
class Num(Spec):
    """A number in ``[lo, hi]`` (``integer``: a whole one); never a bool, never NaN or infinite."""

    lo: float
    hi: float
    integer: bool = False
    none: bool = False

    def describe(self) -> str:
        return f"{'an integer' if self.integer else 'a number'} in [{self.lo:g}, {self.hi:g}]"

    def _ok(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if isinstance(v, float) and (not math.isfinite(v) or (self.integer and not v.is_integer())):
            return False
        return self.lo <= v <= self.hi


def Int(lo: int, hi: int, *, none: bool = False) -> Num:  # noqa: N802 - reads like a type
    return Num(lo, hi, integer=True, none=none)


SEED = Int(0, 2**63 - 1)


@dataclass(frozen=True)
class Bool(Spec):
    none: bool = False

    def describe(self) -> str:
        return "true or false"

    def _ok(self, v) -> bool:
        return isinstance(v, bool)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Text(Spec):
    """A string of at most ``max_len`` characters, no control characters (but newline and tab), matching
    ``pattern`` (a full match) when one is given."""

    max_len: int
    pattern: str | None = None
    none: bool = False
    what: str | None = None

    def describe(self) -> str:
        return self.what or f"a text of at most {self.max_len} characters"

    def _ok(self, v) -> bool:
        if not isinstance(v, str) or len(v) > self.max_len or _CONTROL.search(v):
            return False
        return self.pattern is None or re.fullmatch(self.pattern, v) is not None


SHA256 = Text(64, r"[0-9a-f]{64}", what="a SHA-256 (64 lower-case hex digits)")
SHA256_OR_NONE = Text(64, r"[0-9a-f]{64}", none=True, what="a SHA-256 (64 lower-case hex digits)")


@dataclass(frozen=True)
class StoredPath(Text):
    """A stored input named in the options: a relative path inside the figure's folder (``inputs/<sha16>.<ext>``),
    recorded with its hash in ``<option>_sha256`` (required)."""

    max_len: int = 255
    pattern: str | None = r"(?!.*(^|/)\.{1,2}(/|$))[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,3}"
    none: bool = True
    what: str | None = "a relative path inside the figure's folder (e.g. inputs/0123abcd.npz)"


@dataclass(frozen=True)
class Choice(Spec):
    """One of ``values`` (a tuple, or a function returning one: looked up when checked)."""

    values: Any
    none: bool = False

    def _values(self) -> tuple:
        return tuple(self.values() if callable(self.values) else self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(map(repr, self._values()))

    def _ok(self, v) -> bool:
        return isinstance(v, (str, int, float)) and not isinstance(v, bool) and v in self._values()


@dataclass(frozen=True)
class ListOf(Spec):
    """A list of ``min_len`` to ``max_len`` items, each ``item``."""

    item: Spec
    max_len: int
    min_len: int = 0
    none: bool = False

    def describe(self) -> str:
        return f"a list of {self.min_len} to {self.max_len} items ({self.item.describe()})"

    def _ok(self, v) -> bool:
        return isinstance(v, (list, tuple)) and self.min_len <= len(v) <= self.max_len

    def _check_items(self, value, where: str) -> None:
        for i, x in enumerate(value):
            self.item.check(x, f"{where}[{i}]")


@dataclass(frozen=True)
class DictOf(Spec):
    """A dict of at most ``max_len`` entries: keys ``key`` (texts), values ``value``."""

    key: Text
    value: Spec
    max_len: int
    none: bool = False

    def describe(self) -> str:
        return f"a dict of at most {self.max_len} entries ({self.key.describe()} → {self.value.describe()})"

    def _ok(self, v) -> bool:
        return isinstance(v, dict) and len(v) <= self.max_len

    def _check_items(self, value, where: str) -> None:
        for k, x in value.items():
            self.key.check(k, f"a key of {where}")
            self.value.check(x, f"{where}[{k!r}]")


@dataclass(frozen=True)
class Fields(Spec):
    """A dict with known keys only: ``fields`` (name → spec); those in ``required`` must be there."""

    fields: dict
    required: tuple = ()
    none: bool = False

    def describe(self) -> str:
        return "a dict" + (" with keys among " + ", ".join(self.fields) if self.fields else "")

    def _ok(self, v) -> bool:
        return isinstance(v, dict)

    def _check_items(self, value, where: str) -> None:
        unknown = [k for k in value if k not in self.fields]
        if unknown:
            raise ValueError(f"{where} has an unknown key {_show(unknown[0])}; known: {', '.join(self.fields)}.")
        missing = [k for k in self.required if k not in value]
        if missing:
            raise ValueError(f"{where} lacks {missing[0]!r}.")
        for k, x in value.items():
            self.fields[k].check(x, f"{where}.{k}")


@dataclass(frozen=True)
class AnyOf(Spec):
    """Any one of ``options``."""

    options: tuple
    none: bool = False

    def describe(self) -> str:
        return " or ".join(o.describe() for o in self.options)

    def _ok(self, v) -> bool:
        for o in self.options:
            try:
                o.check(v, "")
            except ValueError:
                continue
            return True
        return False


# ---------------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    name: str
    build: Callable
    n_inputs: str  # "one", "many" or "none" (the inputs are named in the options)
    defaults: dict
    description: str
    letters: bool = True  # panel letters by default (off for image grids)
    family: str = "image"  # "fusion": the model is an image+text adapter
    schema: dict = None  # option → Spec


RECIPES: dict[str, Recipe] = {}

#: The folder an export is written to (and a sidecar read from): recipes resolve relative input files against it.
_INPUT_FOLDER: contextvars.ContextVar = contextvars.ContextVar("input_folder", default=Path("."))


@contextlib.contextmanager
def input_folder(folder: "str | Path"):
    """Within this block, :func:`input_path` resolves relative paths against ``folder``."""
    token = _INPUT_FOLDER.set(Path(folder))
    try:
        yield
    finally:
        _INPUT_FOLDER.reset(token)


class OutsideFolderError(ValueError):
    """A path named in a sidecar or in recipe options leads out of the figure's folder."""


def inside(folder: "str | Path", relative: "str | Path") -> Path:
    """``folder / relative`` if it stays inside ``folder`` once ``..`` and symbolic links are resolved.

    Raises:
        OutsideFolderError: an absolute path elsewhere, ``..`` out of the folder, or a link that leads out.
    """
    root = Path(folder).resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise OutsideFolderError(f"{str(relative)!r} leads out of the figure's folder {root}: paths in a sidecar are "
                                 "read only inside the folder it lies in.")
    return target


def input_path(relative: str) -> Path:
    """A path stored in recipe options, resolved against the export's folder (and refused if it leads out of it)."""
    folder = _INPUT_FOLDER.get()
    inside(folder, relative)
    return folder / relative


def recipe(name: str, *, n_inputs: str = "one", defaults: dict | None = None, schema: dict | None = None,
           letters: bool = True, family: str = "image"):
    """Register a builder ``f(adapter, images, options) -> go.Figure`` under ``name``.

    ``defaults`` gives every option's default, ``schema`` its :class:`Spec` (type, range, list length); both name the
    same options and each default must pass its spec.  A :class:`StoredPath` option ``x`` needs an ``x_sha256``.
    """
    defaults, schema = dict(defaults or {}), dict(schema or {})
    if set(defaults) != set(schema):
        raise TypeError(f"Recipe {name!r}: defaults and schema name different options "
                        f"({sorted(set(defaults) ^ set(schema))}).")
    for k, v in defaults.items():
        schema[k].check(v, f"the default of {name}.{k}")
        if isinstance(schema[k], StoredPath) and schema.get(f"{k}_sha256") != SHA256_OR_NONE:
            raise TypeError(f"Recipe {name!r}: stored input {k!r} needs an option {k}_sha256 (SHA256_OR_NONE).")

    def deco(fn):
        RECIPES[name] = Recipe(name, fn, n_inputs, defaults, (fn.__doc__ or "").strip().splitlines()[0], letters,
                               family, schema)
        return fn

    return deco


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown figure recipe {_show(name)}; known: {', '.join(sorted(RECIPES))}.") from None


def check_options(name: str, options: dict) -> dict:
    """``options`` (complete) checked against recipe ``name``'s schema; ``ValueError`` says which value is wrong."""
    r = get_recipe(name)
    for k, v in options.items():
        if k not in r.schema:
            raise ValueError(f"Recipe {name!r} has no option {_show(k)}; options: {', '.join(sorted(r.defaults))}.")
        r.schema[k].check(v, f"Option {k!r} of recipe {name!r}")
    for k, spec in r.schema.items():
        if isinstance(spec, StoredPath) and options.get(k) is not None and options.get(f"{k}_sha256") is None:
            raise ValueError(f"Option {k!r} of recipe {name!r} names a stored input without its SHA-256 "
                             f"({k}_sha256): it cannot be checked, so it is not read.")
    return options


def options_for(name: str, options: dict | None) -> dict:
    """``options`` completed with the recipe's defaults and checked against its schema; unknown keys are refused."""
    r = get_recipe(name)
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"The options of recipe {name!r} must be a dict, got {_show(options)}.")
    opts = dict(r.defaults)
    for k, v in (options or {}).items():
        if k not in r.defaults:
            raise ValueError(f"Recipe {name!r} has no option {_show(k)}; options: {', '.join(sorted(r.defaults))}.")
        opts[k] = v
    return check_options(name, opts)
