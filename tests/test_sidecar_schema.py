"""The sidecar schema as a contract, written out here (not read back from the code): every bounded field accepts its
bounds and refuses one step past them with a message naming the field, every required key is required, and the
canonical JSON form is fixed (reproduce compares the bytes of sidecars written by earlier versions)."""

from __future__ import annotations

import copy
import json
import math
import re

import pytest

from explorer.export.sidecar import dumps, embedded, validate

SHA = "0123456789abcdef" * 4


def _valid() -> dict:
    from test_sidecar_untrusted import _sidecar

    sc = _sidecar()
    sc["files"] = {"png": {"name": "fig.png", "sha256": SHA}}
    return sc


def _set(sc: dict, path: str, value) -> dict:
    out = copy.deepcopy(sc)
    node = out
    *parents, last = path.split(".")
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def _where(field: str) -> str:
    """How messages name a field: ``sidecar.provenance.inputs[0].name``."""
    field = re.sub(r"^files\.(\w+)", r"files['\1']", field)
    return "sidecar" + ("." if field else "") + re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", field)


def _shown(value) -> str:
    """How messages quote a value: its repr, or its first 50 characters and the length."""
    r = repr(value)
    return r if len(r) <= 60 else r[:50] + f"… ({len(r)} characters)"


#: (field, accepted values, refused value, what the message says it must be)
NUMBERS = [
    ("style.preset.width_in", [0.5, 12.0], 12.01, "a number in [0.5, 12]"),
    ("style.preset.width_in", [0.5], 0.49, "a number in [0.5, 12]"),
    ("style.preset.font_pt", [2.0, 72.0], 72.5, "a number in [2, 72]"),
    ("style.preset.font_pt", [2], 1.99, "a number in [2, 72]"),
    ("style.preset.tick_pt", [2.0, 72.0], 1.5, "a number in [2, 72]"),
    ("style.preset.tick_pt", [72], 73, "a number in [2, 72]"),
    ("style.preset.letter_pt", [2.0, 72.0], 1.0, "a number in [2, 72]"),
    ("style.preset.letter_pt", [72], 72.01, "a number in [2, 72]"),
    ("style.preset.dpi", [50, 1200], 1201, "an integer in [50, 1200]"),
    ("style.preset.dpi", [50], 49, "an integer in [50, 1200]"),
    ("style.preset.dpi", [300], 300.5, "an integer in [50, 1200]"),
    ("style.height_in", [0.25, 48.0, None], 48.5, "a number in [0.25, 48] or null"),
    ("style.height_in", [0.25], 0.24, "a number in [0.25, 48] or null"),
    ("style.width_pt", [0.0, 100_000.0], 100_000.5, "a number in [0, 100000]"),
    ("style.width_pt", [0], -0.5, "a number in [0, 100000]"),
    ("style.height_pt", [0.0, 100_000.0], -1, "a number in [0, 100000]"),
    ("style.height_pt", [100_000], 100_001, "a number in [0, 100000]"),
    ("style.letters", [True, False], 1, "true or false"),
    ("provenance.batched", [True, False], "yes", "true or false"),
]

#: (field, longest accepted text, what the message says it must be; None: "a text of at most N characters")
TEXTS = [
    ("style.preset.name", 64, None), ("style.preset.description", 1000, None),
    ("style.preset.font_family", 300, "a CSS font list"),
    ("provenance.model.id", 1000, "a model name, folder or Hugging Face id (at most 1000 characters)"),
    ("provenance.model.model_type", 100, None),
    ("provenance.inputs.0.name", 255, None),
    ("recipe.name", 64, None), ("title", 500, None), ("caption", 20_000, None),
]


@pytest.mark.parametrize("field, accepted, refused, must", NUMBERS)
def test_numbers_accept_their_bounds_and_refuse_one_step_past(field, accepted, refused, must):
    sc = _valid()
    for v in accepted:
        validate(_set(sc, field, v))
    with pytest.raises(ValueError) as e:
        validate(_set(sc, field, refused))
    assert str(e.value) == f"{_where(field)} must be {must}, got {_shown(refused)}."
    for bad in (float("nan"), float("inf"), True):
        if not must.startswith("true"):
            with pytest.raises(ValueError, match="^" + re.escape(_where(field)) + " must be"):
                validate(_set(sc, field, bad))


@pytest.mark.parametrize("field, longest, what", TEXTS)
def test_texts_accept_their_longest_and_refuse_one_more_character(field, longest, what):
    sc = _valid()
    if field != "recipe.name":  # (a recipe name is then looked up: only the refusal is the schema's)
        validate(_set(sc, field, "a" * longest))
    must = what or f"a text of at most {longest} characters"
    none_ok = field in ("provenance.model.model_type", "provenance.inputs.0.name", "title", "caption")
    with pytest.raises(ValueError) as e:
        validate(_set(sc, field, "a" * (longest + 1)))
    assert str(e.value).startswith(f"{_where(field)} must be {must}{' or null' if none_ok else ''}, got 'aaaa")
    with pytest.raises(ValueError, match="^" + re.escape(_where(field)) + " must be"):
        validate(_set(sc, field, "a\x07b"))  # a control character
    if none_ok:
        validate(_set(sc, field, None))
    else:
        with pytest.raises(ValueError, match="^" + re.escape(_where(field)) + " must be"):
            validate(_set(sc, field, None))


@pytest.mark.parametrize("field, good, bad, must", [
    ("provenance.model.device", ["cpu", "cuda:0", "cuda:123", "mps"], "cuda:1234", "a device (cpu, cuda:0, mps)"),
    ("provenance.model.device", ["cpu"], "CPU", "a device (cpu, cuda:0, mps)"),
    ("provenance.model.dtype", ["float32", "bfloat16", "float16"], "float64", "one of 'float32', 'bfloat16', 'float16'"),
    ("provenance.model.family", ["fusion", "multimodal", "hierarchical"], "image",
     "one of 'fusion', 'multimodal', 'hierarchical'"),
    ("provenance.model.weights_sha256", [SHA, None], SHA.upper(), "a SHA-256 (64 lower-case hex digits) or null"),
    ("provenance.inputs.0.sha256", [SHA], SHA[:-1], "a SHA-256 (64 lower-case hex digits)"),
    ("style.preset.font_family", ["Times New Roman, serif"], "Arial; color: red", "a CSS font list"),
    ("files.png.name", ["fig.png", "a b.png"], "sub/fig.png", "a file name (no folder)"),
    ("files.png.name", ["fig.png"], "..\\fig.png", "a file name (no folder)"),
    ("files.png.sha256", [SHA], "x" * 64, "a SHA-256 (64 lower-case hex digits)"),
    ("schema", ["explorer-figure/1"], "explorer-figure/2", "one of 'explorer-figure/1'"),
])
def test_patterns_and_choices(field, good, bad, must):
    sc = _valid()
    for v in good:
        validate(_set(sc, field, v))
    with pytest.raises(ValueError) as e:
        validate(_set(sc, field, bad))
    assert str(e.value) == f"{_where(field)} must be {must}, got {_shown(bad)}."


@pytest.mark.parametrize("field, longest, item", [("formats", 3, "png"), ("notes", 100, "a note"),
                                                  ("provenance.inputs", 16, None)])
def test_lists_accept_their_longest(field, longest, item):
    sc = _valid()
    if item is None:  # inputs: copies of the first
        item = copy.deepcopy(sc["provenance"]["inputs"][0])
    ok = [item] * longest if field != "formats" else ["pdf", "svg", "png"]
    validate(_set(sc, field, ok))
    with pytest.raises(ValueError, match=rf"^sidecar\.{field} must be a list of \d+ to {longest} items"):
        validate(_set(sc, field, ok + [item]))
    if field == "formats":
        with pytest.raises(ValueError, match=r"^sidecar\.formats must be a list of 1 to 3 items"):
            validate(_set(sc, field, []))
        with pytest.raises(ValueError, match=r"^sidecar\.formats lists a format twice: \['png', 'png'\]\.$"):
            validate(_set(sc, field, ["png", "png"]))
    if field == "notes":
        validate(_set(sc, field, ["n" * 2000]))
        with pytest.raises(ValueError, match=r"^sidecar\.notes\[0\] must be a text of at most 2000 characters"):
            validate(_set(sc, field, ["n" * 2001]))


def test_versions_and_files_dicts():
    sc = _valid()
    validate(_set(sc, "versions", {f"pkg{i}": "1.0" for i in range(64)}))
    with pytest.raises(ValueError, match=r"^sidecar\.versions must be a dict of at most 64 entries"):
        validate(_set(sc, "versions", {f"pkg{i}": "1.0" for i in range(65)}))
    validate(_set(sc, "versions", {"k" * 64: "v" * 300, "none": None}))
    with pytest.raises(ValueError, match=r"^a key of sidecar\.versions must be a text of at most 64 characters"):
        validate(_set(sc, "versions", {"k" * 65: "1"}))
    with pytest.raises(ValueError, match=r"^sidecar\.versions\['k'\] must be a text of at most 300 characters or null"):
        validate(_set(sc, "versions", {"k": "v" * 301}))
    with pytest.raises(ValueError, match=r"^a key of sidecar\.files must be a format, got 'jpeg'\.$"):
        validate(_set(sc, "files", {"jpeg": {"name": "f.jpeg", "sha256": SHA}}))
    with pytest.raises(ValueError, match=r"^sidecar\.files must be a dict of at most 3 entries"):
        validate(_set(sc, "files", {f: {"name": "f", "sha256": SHA} for f in ("pdf", "svg", "png", "jpg")}))


@pytest.mark.parametrize("path, key", [
    ("", "schema"), ("", "style"), ("", "formats"),
    ("style", "preset"), ("style", "height_in"), ("style", "letters"),
    ("style.preset", "name"), ("style.preset", "width_in"), ("style.preset", "font_pt"), ("style.preset", "tick_pt"),
    ("style.preset", "letter_pt"), ("style.preset", "font_family"), ("style.preset", "dpi"),
    ("provenance", "model"), ("provenance", "inputs"), ("provenance.model", "id"), ("provenance.inputs.0", "sha256"),
    ("recipe", "name"), ("recipe", "options"), ("files.png", "name"), ("files.png", "sha256"),
])
def test_required_keys(path, key):
    sc = _valid()
    node = sc
    for p in path.split(".") if path else []:
        node = node[int(p)] if isinstance(node, list) else node[p]
    del node[key]
    where = _where(path)
    with pytest.raises(ValueError) as e:
        validate(sc)
    assert str(e.value) == f"{where} lacks {key!r}."


def test_unknown_keys_are_named_with_the_known_ones():
    with pytest.raises(ValueError) as e:
        validate(_set(_valid(), "style.colour", "red"))
    assert str(e.value) == ("sidecar.style has an unknown key 'colour'; known: preset, height_in, letters, rows, title_pt, "
                            "width_pt, height_pt.")


def test_inputs_name_a_sample_or_a_path_and_a_recipe_needs_provenance():
    sc = _valid()
    both = _set(sc, "provenance.inputs.0.path", "x.png")
    with pytest.raises(ValueError, match=r"^sidecar\.provenance\.inputs\[0\] must name either a shipped sample or a path\.$"):
        validate(both)
    neither = copy.deepcopy(sc)
    del neither["provenance"]["inputs"][0]["sample"]
    with pytest.raises(ValueError, match=r"inputs\[0\] must name either"):
        validate(neither)
    with pytest.raises(ValueError, match=r"^sidecar\.provenance is missing: a figure with a recipe records its model"):
        validate(_set(sc, "provenance", None))
    bare = _set(_set(sc, "provenance", None), "recipe", None)
    assert validate(bare) is bare  # a bare figure: no recipe, no provenance
    with pytest.raises(ValueError, match="recipe"):
        validate(_set(sc, "recipe.name", "no-such-recipe"))


def test_canonical_json_is_fixed():
    """Sorted keys, one-space indent, UTF-8 kept, no NaN: equal sidecars give equal bytes, as earlier versions wrote."""
    assert dumps({"b": [1, 2], "a": "é"}) == '{\n "a": "é",\n "b": [\n  1,\n  2\n ]\n}'
    assert dumps({"a": 1, "b": 2}) == dumps({"b": 2, "a": 1})
    with pytest.raises(ValueError):
        dumps({"x": math.nan})
    sc = _valid()
    assert "files" in sc and "files" not in embedded(sc) and embedded(sc) == {k: v for k, v in sc.items() if k != "files"}
    assert json.loads(dumps(sc)) == sc


@pytest.mark.parametrize("field, longest, none_ok, must", [
    ("provenance.model.device", 32, False, "a device (cpu, cuda:0, mps)"),
    ("provenance.inputs.0.copied_from", 4096, True, "a text of at most 4096 characters"),
    ("files.png.name", 255, False, "a file name (no folder)"),
])
def test_more_text_limits(field, longest, none_ok, must):
    sc = _valid()
    validate(_set(sc, field, "a" * longest))
    with pytest.raises(ValueError) as e:
        validate(_set(sc, field, "a" * (longest + 1)))
    assert str(e.value) == f"{_where(field)} must be {must}{' or null' if none_ok else ''}, got {_shown('a' * (longest + 1))}."
    if none_ok:
        validate(_set(sc, field, None))


def test_input_paths_and_original_hashes():
    sc = _valid()
    del sc["provenance"]["inputs"][0]["sample"]
    validate(_set(sc, "provenance.inputs.0.path", "p" * 4096))
    with pytest.raises(ValueError, match=r"^sidecar\.provenance\.inputs\[0\]\.path must be a text of at most 4096"):
        validate(_set(sc, "provenance.inputs.0.path", "p" * 4097))
    ok = _set(_set(sc, "provenance.inputs.0.path", "x.png"), "provenance.inputs.0.sha256_original", SHA)
    validate(ok)
    with pytest.raises(ValueError, match=r"inputs\[0\]\.sha256_original must be a SHA-256"):
        validate(_set(ok, "provenance.inputs.0.sha256_original", None))
    with pytest.raises(ValueError, match=r"^sidecar\.recipe\.options must be a dict"):
        validate(_set(_valid(), "recipe.options", None))


# ---------------------------------------------------------------------------------------------- read_sidecar
def _exported(tmp_path, suffix: str, text: str):
    """A file of each kind holding ``text`` where an export puts it."""
    from explorer.export.sidecar import PDF_KEY, PNG_KEY
    from xml.sax.saxutils import escape

    p = tmp_path / f"fig{suffix}"
    low = suffix.lower()
    if low == ".png":
        import io

        import numpy as np
        from PIL import Image, PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_itxt(PNG_KEY, text, zip=True)
        buf = io.BytesIO()
        Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(buf, format="PNG", pnginfo=info)
        p.write_bytes(buf.getvalue())
    elif low == ".pdf":
        import io

        from pypdf import PdfWriter

        w = PdfWriter()
        w.add_blank_page(72, 72)
        w.add_metadata({PDF_KEY: text})
        buf = io.BytesIO()
        w.write(buf)
        p.write_bytes(buf.getvalue())
    elif low == ".svg":
        p.write_text(f'<svg><metadata id="explorer-sidecar">{escape(text)}</metadata></svg>')
    else:
        p.write_text(text)
    return p


@pytest.mark.parametrize("suffix", [".json", ".png", ".pdf", ".svg", ".PNG", ".Svg"])
def test_read_sidecar_reads_every_kind_of_file(tmp_path, suffix):
    from explorer.export.sidecar import read_sidecar

    sc = embedded(_valid()) if suffix.lower() != ".json" else _valid()
    assert read_sidecar(_exported(tmp_path, suffix, dumps(sc))) == sc


@pytest.mark.parametrize("suffix, message", [
    (".png", "has no 'explorer:sidecar' text chunk: not exported by explorer."),
    (".pdf", "has no /explorer:sidecar entry: not exported by explorer."),
    (".svg", "has no explorer metadata element."),
])
def test_read_sidecar_says_when_a_figure_has_none(tmp_path, suffix, message):
    from explorer.export.sidecar import PDF_KEY, PNG_KEY, SidecarError, read_sidecar

    assert (PNG_KEY, PDF_KEY) == ("explorer:sidecar", "/explorer:sidecar")
    p = tmp_path / f"plain{suffix}"
    if suffix == ".png":
        from PIL import Image

        Image.new("RGB", (2, 2)).save(p)
    elif suffix == ".pdf":
        p.write_bytes(b"%PDF-1.4\n%%EOF")
    else:
        p.write_text("<svg/>")
    with pytest.raises(SidecarError) as e:
        read_sidecar(p)
    assert str(e.value) == f"{p} {message}"


def test_read_sidecar_errors_name_the_file_and_the_reason(tmp_path):
    from explorer.export.sidecar import MAX_FIGURE_BYTES, MAX_SIDECAR_BYTES, SidecarError, read_sidecar

    def err(p) -> str:
        with pytest.raises(SidecarError) as e:
            read_sidecar(p)
        return str(e.value)

    assert err(tmp_path / "none.json") == f"{tmp_path / 'none.json'} does not exist."
    for name, label in (("fig.txt", ".txt"), ("fig", "suffix-less")):
        (tmp_path / name).write_text("{}")
        assert err(tmp_path / name) == f"Cannot read a sidecar from a {label} file; give the .json, .png, .pdf or .svg."
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert err(bad).startswith(f"The sidecar in {bad} is not valid JSON: ")
    bad.write_bytes(b'{"a": "\xff"}')
    assert err(bad).startswith(f"The sidecar in {bad} is not UTF-8 text: ")
    bad.write_text('{"schema": "explorer-figure/1", "n": ' + "9" * 5000 + "}")
    assert err(bad).startswith(f"The sidecar in {bad} cannot be read: ValueError: Exceeds the limit")
    big = tmp_path / "big.json"
    big.write_text(" " * (MAX_SIDECAR_BYTES + 1))
    assert err(big) == f"{big} is 1 MiB, larger than the 1 MiB a sidecar is read from."
    big.write_text(" " * MAX_SIDECAR_BYTES)  # exactly at the limit: read (and then found not to be JSON)
    assert "not valid JSON" in err(big)
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.truncate(MAX_FIGURE_BYTES + 1)
    assert err(huge) == f"{huge} is {(MAX_FIGURE_BYTES + 1) / 2**20:.0f} MiB, larger than the {MAX_FIGURE_BYTES >> 20} MiB a sidecar is read from."
    svg = _exported(tmp_path, ".svg", "x" * (MAX_SIDECAR_BYTES + 1))
    assert err(svg) == f"The sidecar in {svg} is larger than 1 MiB."
    svg = _exported(tmp_path, ".svg", json.dumps({"schema": "explorer-figure/1", "p": "x" * (MAX_SIDECAR_BYTES - 60)}))
    assert "larger than" not in err(svg)  # under the limit: read, then checked against the schema
    png = tmp_path / "cut.png"
    body = b"explorer:sidecar\0\0\xff\xff\xff"  # zTXt with a broken deflate stream
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + len(body).to_bytes(4, "big") + b"zTXt" + body + b"\0" * 4)
    assert err(png).startswith(f"{png}: its 'explorer:sidecar' text chunk cannot be read")
    pdf = tmp_path / "cut.pdf"
    pdf.write_bytes(b"%PDF-1.4 /explorer:sidecar <41")
    assert err(pdf) == f"{pdf}: its /explorer:sidecar string is not closed."


def test_short_quotes_up_to_60_characters():
    from explorer.export.sidecar import _short

    assert _short("a" * 58) == repr("a" * 58)  # 60 characters with the quotes
    assert _short("a" * 59) == repr("a" * 59)[:50] + "…"
