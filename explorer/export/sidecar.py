"""Sidecars: the JSON that travels with every exported figure.

The same JSON (without the list of written files and their hashes) is embedded in the
files themselves: PNG ``iTXt`` chunk ``explorer:sidecar``, PDF document-information entry
``/explorer:sidecar``, SVG ``<metadata id="explorer-sidecar">``.  It holds no timestamps, so
identical inputs give identical files.

A sidecar is untrusted input (figures are shared; ``reproduce`` runs on files from others):
:func:`read_sidecar` reads it in time linear in the file's size, with size limits, and checks the
whole of it against a schema (:func:`validate`: known keys only, types, ranges, lengths, the
recipe's own option schema) before anything runs; :class:`SidecarError` says what is wrong.
"""

from __future__ import annotations

import functools
import io
import json
import platform
import re
import shutil
import struct
import subprocess
import zlib
from importlib import metadata as md
from pathlib import Path

SCHEMA = "explorer-figure/1"
#: Largest ``.json`` sidecar read, and largest sidecar text embedded in a figure.
MAX_SIDECAR_BYTES = 1 << 20
#: Most PNG chunks read before the image data (an export writes a handful).
MAX_PNG_CHUNKS = 1000
#: Largest exported file (PNG / PDF / SVG) a sidecar is read from.
MAX_FIGURE_BYTES = 256 << 20
PNG_KEY = "explorer:sidecar"
PDF_KEY = "/explorer:sidecar"

_PACKAGES = ("explorer", "torch", "transformers", "numpy", "opencv-python-headless", "plotly", "kaleido", "pillow",
             "pypdf", "safetensors")


@functools.lru_cache(maxsize=1)
def _chromium_version() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        return "not found"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out or "unknown"


@functools.lru_cache(maxsize=1)
def versions() -> dict:
    """Versions of everything that can change the pixels of an export."""
    out = {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}"}
    for name in _PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    out["chromium"] = _chromium_version()
    return out


def dumps(sidecar: dict) -> str:
    """Canonical JSON (sorted keys), so equal sidecars are equal strings."""
    return json.dumps(sidecar, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)


def embedded(sidecar: dict) -> dict:
    """The part of a sidecar that is embedded in the figure files (no file list)."""
    return {k: v for k, v in sidecar.items() if k != "files"}


class SidecarError(ValueError):
    """The file holds no explorer sidecar or an unreadable one."""


def _png_text(data: bytes, key: str) -> str | None:
    """The text chunk (``iTXt``, ``tEXt`` or ``zTXt``) named ``key`` of PNG ``data``, or ``None``: one pass over the
    chunks before the image data (where an export writes it), at most :data:`MAX_PNG_CHUNKS` of them; the image itself
    is not decoded."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise SidecarError("not a PNG file")
    want = key.encode("latin-1")
    pos = 8
    for _ in range(MAX_PNG_CHUNKS):
        if pos + 8 > len(data):
            return None
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if len(body) != length or kind in (b"IDAT", b"IEND"):
            return None
        if kind not in (b"iTXt", b"tEXt", b"zTXt"):
            continue
        name, sep, rest = body.partition(b"\0")
        if name != want or not sep:
            continue
        try:
            if kind == b"tEXt":
                return rest.decode("latin-1")
            if kind == b"zTXt":
                return _inflate(rest[1:]).decode("latin-1")
            compressed, _method, rest = rest[0], rest[1], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _tkey, _, text = rest.partition(b"\0")
            return (_inflate(text) if compressed else text).decode("utf-8")
        except (UnicodeDecodeError, zlib.error, IndexError) as e:
            raise SidecarError(f"its {key!r} text chunk cannot be read ({e})") from e
    raise SidecarError(f"it has more than {MAX_PNG_CHUNKS} chunks before its image data")


def _inflate(data: bytes) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, MAX_SIDECAR_BYTES + 1)
    if len(out) > MAX_SIDECAR_BYTES:
        raise SidecarError(f"its sidecar text is larger than {MAX_SIDECAR_BYTES >> 20} MiB")
    return out


#: A literal string as pypdf writes it: characters, escapes, no unescaped parentheses; atomic, so it never backtracks.
_PDF_LITERAL = re.compile(rb"\(((?>[^\\()]+|\\[\s\S])*+)\)")
_PDF_ESCAPE = re.compile(rb"\\([0-7]{1,3}|\r\n?|[\s\S])")
#: Escape → byte: octal (1-3 digits), the named ones, end of line (a continuation); any other: the character itself.
_PDF_ESCAPES = {**{f"{v:o}".zfill(n).encode(): bytes([v & 0xFF]) for n in (1, 2, 3) for v in range(8 ** n)},
                b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f", b"\r": b"", b"\n": b"", b"\r\n": b""}


def _pdf_unescape(m: "re.Match") -> bytes:
    e = m[1]
    return _PDF_ESCAPES.get(e, e)


def _pdf_text(data: bytes, key: str) -> str | None:
    """The text string stored under ``key`` in a PDF's document information (as pypdf writes it: a literal
    ``( … )`` or hex ``< … >`` string), or ``None``.  The PDF is not parsed as a whole: the last ``key`` token is
    found and its string read in one pass (no object graph, no cross-reference repair, no recursion)."""
    if not data.startswith(b"%PDF-"):
        raise SidecarError("not a PDF file")
    name = key.encode("latin-1")
    end = len(data)
    while True:
        i = data.rfind(name, 0, end)
        if i < 0:
            return None
        j = i + len(name)
        if j >= len(data) or data[j:j + 1] in b" \t\r\n\f\0(<":
            break
        end = i  # a longer name that starts with the key
    while j < len(data) and data[j:j + 1] in b" \t\r\n\f\0":
        j += 1
    if data[j:j + 1] == b"<":
        k = data.find(b">", j)
        if k < 0:
            raise SidecarError(f"its {key} string is not closed")
        hexdigits = data[j + 1:k].translate(None, b" \t\r\n\f\0")
        if len(hexdigits) > 8 * MAX_SIDECAR_BYTES:
            raise SidecarError(f"its {key} string is larger than {MAX_SIDECAR_BYTES >> 20} MiB")
        try:
            raw = bytes.fromhex((hexdigits + b"0" * (len(hexdigits) % 2)).decode("ascii"))
        except (ValueError, UnicodeDecodeError) as e:
            raise SidecarError(f"its {key} string is not valid hex ({e})") from e
    elif data[j:j + 1] == b"(":
        m = _PDF_LITERAL.match(data, j)
        if m is None:
            raise SidecarError(f"its {key} string is not closed (or not written as explorer writes it)")
        body = m.group(1)
        if len(body) > 4 * MAX_SIDECAR_BYTES:
            raise SidecarError(f"its {key} string is larger than {MAX_SIDECAR_BYTES >> 20} MiB")
        raw = _PDF_ESCAPE.sub(_pdf_unescape, body)
    else:
        raise SidecarError(f"its {key} entry is not a string")
    from pypdf.generic import create_string_object

    return str(create_string_object(raw))  # UTF-16 with a byte-order mark, else PDFDocEncoding (as pypdf reads it)


def _svg_text(text: str) -> str | None:
    """The content of ``<metadata id="explorer-sidecar">…</metadata>``: the first opener and the first closer after it
    (two linear searches; no pattern that can backtrack)."""
    opener, closer = '<metadata id="explorer-sidecar">', "</metadata>"
    i = text.find(opener)
    if i < 0:
        return None
    j = text.find(closer, i + len(opener))
    return None if j < 0 else text[i + len(opener):j]


def _read_bytes(path: Path, limit: int) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise SidecarError(f"{path} is {size / 2**20:.0f} MiB, larger than the {limit >> 20} MiB a sidecar is read from.")
    return path.read_bytes()


def read_sidecar(path: "str | Path") -> dict:
    """The sidecar of an export: from ``FIGURE.json``, or embedded in a ``.png`` / ``.pdf`` / ``.svg``.

    Raises:
        SidecarError: no such file, no sidecar in it, a file or sidecar too large, invalid JSON, or a sidecar that
            does not fit the schema (:func:`validate`).
    """
    path = Path(path)
    if not path.is_file():
        raise SidecarError(f"{path} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            text = _read_bytes(path, MAX_SIDECAR_BYTES).decode("utf-8")
        elif suffix == ".png":
            data = _read_bytes(path, MAX_FIGURE_BYTES)
            try:
                text = _png_text(data, PNG_KEY)
            except SidecarError as e:
                raise SidecarError(f"{path}: {e}.") from e
            if text is None:
                raise SidecarError(f"{path} has no {PNG_KEY!r} text chunk: not exported by explorer.")
        elif suffix == ".pdf":
            try:
                text = _pdf_text(_read_bytes(path, MAX_FIGURE_BYTES), PDF_KEY)
            except SidecarError as e:
                raise SidecarError(f"{path}: {e}.") from e
            if text is None:
                raise SidecarError(f"{path} has no {PDF_KEY} entry: not exported by explorer.")
        elif suffix == ".svg":
            from xml.sax.saxutils import unescape

            found = _svg_text(_read_bytes(path, MAX_FIGURE_BYTES).decode("utf-8"))
            if found is None:
                raise SidecarError(f"{path} has no explorer metadata element.")
            text = unescape(found)
        else:
            raise SidecarError(f"Cannot read a sidecar from a {suffix or 'suffix-less'} file; give the .json, .png, .pdf or .svg.")
        if len(text) > MAX_SIDECAR_BYTES:
            raise SidecarError(f"The sidecar in {path} is larger than {MAX_SIDECAR_BYTES >> 20} MiB.")
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SidecarError(f"The sidecar in {path} is not valid JSON: {e}.") from e
    except UnicodeDecodeError as e:
        raise SidecarError(f"The sidecar in {path} is not UTF-8 text: {e}.") from e
    except (ValueError, RecursionError) as e:  # over-deep nesting, a number of thousands of digits
        if isinstance(e, SidecarError):
            raise
        raise SidecarError(f"The sidecar in {path} cannot be read: {type(e).__name__}: {str(e)[:200]}.") from e
    except OSError as e:
        raise SidecarError(f"Cannot read {path}: {e}.") from e
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SidecarError(f"{path} is not an explorer figure sidecar (schema "
                           f"{_short(data.get('schema')) if isinstance(data, dict) else None}).")
    try:
        validate(data)
    except ValueError as e:
        raise SidecarError(f"{path} is not a valid figure sidecar: {e}") from e
    return data


def _short(value) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:50] + "…"


# ---------------------------------------------------------------------------------------------- the schema
def _schema():
    from ..data.samples import SAMPLES
    from .registry import SHA256, SHA256_OR_NONE, Bool, Choice, DictOf, Fields, Int, ListOf, Num, Text
    from .render import FORMATS

    preset = Fields({"name": Text(64), "width_in": Num(0.5, 12.0), "font_pt": Num(2.0, 72.0), "tick_pt": Num(2.0, 72.0),
                     "letter_pt": Num(2.0, 72.0), "font_family": Text(300, r"[^<>{};\\]*", what="a CSS font list"),
                     "dpi": Int(50, 1200), "description": Text(1000)},
                    required=("name", "width_in", "font_pt", "tick_pt", "letter_pt", "font_family", "dpi"))
    style = Fields({"preset": preset, "height_in": Num(0.25, MAX_HEIGHT_IN, none=True), "letters": Bool(),
                    "rows": Int(1, 64), "title_pt": Num(2.0, 72.0, none=True),
                    "width_pt": Num(0.0, 100_000.0), "height_pt": Num(0.0, 100_000.0)},
                   required=("preset", "height_in", "letters"))
    model = Fields({"id": Text(1000, what="a model name, folder or Hugging Face id (at most 1000 characters)"),
                    "model_type": Text(100, none=True), "weights_sha256": SHA256_OR_NONE,
                    "device": Text(32, r"[a-z]+(:[0-9]{1,3})?", what="a device (cpu, cuda:0, mps)"),
                    "dtype": Choice(("float32", "bfloat16", "float16")), "family": Choice(("fusion", "multimodal", "hierarchical"))},
                   required=("id",))
    one_input = Fields({"sample": Choice(tuple(SAMPLES)), "path": Text(4096), "name": Text(255, none=True),
                        "sha256": SHA256, "copied_from": Text(4096, none=True), "sha256_original": SHA256},
                       required=("sha256",))
    provenance = Fields({"model": model, "inputs": ListOf(one_input, MAX_INPUTS), "batched": Bool()},
                        required=("model", "inputs"), none=True)
    recipe = Fields({"name": Text(64), "options": Fields({}, none=False)}, required=("name", "options"), none=True)
    files = DictOf(Text(4, "|".join(FORMATS), what="a format"),
                   Fields({"name": Text(255, r"[^/\\]+", what="a file name (no folder)"), "sha256": SHA256},
                          required=("name", "sha256")), len(FORMATS))
    top = Fields({"schema": Choice((SCHEMA,)), "title": Text(500, none=True), "caption": Text(20_000, none=True), "recipe": recipe,
                  "provenance": provenance, "style": style, "formats": ListOf(Choice(FORMATS), len(FORMATS), 1),
                  "notes": ListOf(Text(2000), 100), "versions": DictOf(Text(64), Text(300, none=True), 64),
                  "files": files},
                 required=("schema", "style", "formats"))
    return top


#: Tallest figure (inches) an export writes or a sidecar may ask for.
MAX_HEIGHT_IN = 48.0
#: Most inputs one figure records.
MAX_INPUTS = 16


def validate(sidecar: dict) -> dict:
    """``sidecar`` if it fits the schema: known keys only, each value of its type and range, every input with its
    SHA-256 and exactly one of ``sample`` / ``path``, file names without folders, formats listed once, and the recipe's
    options checked against the recipe's own schema.

    Raises:
        ValueError: the first thing that does not fit, named by its place (``style.height_in must be …``).
    """
    from .registry import get_recipe, options_for

    top = _schema()
    recipe = sidecar.get("recipe") if isinstance(sidecar, dict) else None
    # the recipe's options have their own schema (checked below): the generic pass only checks the rest
    shallow = dict(sidecar)
    if isinstance(recipe, dict) and isinstance(recipe.get("options"), dict):
        shallow["recipe"] = {**recipe, "options": {}}
    top.check(shallow, "sidecar")
    if len(set(sidecar["formats"])) != len(sidecar["formats"]):
        raise ValueError(f"sidecar.formats lists a format twice: {sidecar['formats']}.")
    prov = sidecar.get("provenance")
    for i, spec in enumerate((prov or {}).get("inputs", [])):
        if ("sample" in spec) == ("path" in spec):
            raise ValueError(f"sidecar.provenance.inputs[{i}] must name either a shipped sample or a path.")
    if recipe is not None:
        if prov is None:
            raise ValueError("sidecar.provenance is missing: a figure with a recipe records its model and inputs.")
        get_recipe(recipe["name"])
        options_for(recipe["name"], recipe["options"])
    return sidecar
