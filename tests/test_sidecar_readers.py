"""The embedded-sidecar readers against the writers of the formats' own libraries: whatever text Pillow puts in a PNG
text chunk (tEXt, zTXt, iTXt, compressed or not), pypdf in a PDF's document information (literal or hex strings,
escapes, UTF-16) or an SVG in its metadata element, the reader gives back exactly that text, and nothing for a key
that is not there."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from explorer.export.sidecar import SidecarError, _pdf_text, _png_text, _svg_text

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=300)
latin1 = st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=300)


def _png(chunks: list[tuple[str, str, str]]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for kind, key, value in chunks:
        if kind == "tEXt":
            info.add_text(key, value)
        elif kind == "zTXt":
            info.add_text(key, value, zip=True)
        elif kind == "iTXt":
            info.add_itxt(key, value, lang="en", tkey="Sidecar", zip=False)
        else:
            info.add_itxt(key, value, lang="", tkey="", zip=True)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((3, 5, 3), np.uint8)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["tEXt", "zTXt", "iTXt", "iTXt-zip"]), value=st.data(), before=st.integers(0, 3))
def test_png_text_chunks_read_back_exactly(kind, value, before):
    text = value.draw(latin1 if kind in ("tEXt", "zTXt") else texts)
    others = [("tEXt", f"explorer-{i}", "x" * i) for i in range(before)] + [("iTXt", "explore", "a prefix of the key")]
    data = _png(others + [(kind, "explorer", text)])
    assert _png_text(data, "explorer") == text
    assert _png_text(data, "explorer-9") is None
    assert _png_text(data, "Explorer") is None  # keys are case-sensitive


def test_png_text_after_the_image_data_is_not_read_and_bad_files_are_named():
    data = _png([])
    iend = data.rfind(b"IEND") - 4
    body = b"explorer\x00late"
    import struct
    import zlib

    late = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    assert _png_text(data[:iend] + late + data[iend:], "explorer") is None  # written after IDAT: not an export's
    with pytest.raises(SidecarError, match="not a PNG file"):
        _png_text(b"GIF89a" + data[6:], "explorer")
    broken = _png([("zTXt", "explorer", "x" * 50)])
    k = broken.find(b"explorer\x00\x00") + 10
    with pytest.raises(SidecarError, match="'explorer' text chunk cannot be read"):
        _png_text(broken[:k] + b"\xff\xff\xff" + broken[k + 3:], "explorer")


def _pdf(meta: dict) -> bytes:
    from pypdf import PdfWriter

    w = PdfWriter()
    w.add_blank_page(72, 72)
    w.add_metadata(meta)
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


@settings(max_examples=60, deadline=None)
@given(text=texts)
def test_pdf_info_strings_read_back_exactly(text):
    data = _pdf({"/ExplorerSidecar": text, "/ExplorerSidecarX": "a longer key", "/Title": "(not) this \\ one"})
    assert _pdf_text(data, "/ExplorerSidecar") == text
    assert _pdf_text(data, "/Absent") is None


@pytest.mark.parametrize("text", ["(balanced) and \\ backslash", "line\nbreak\ttab\rreturn", "é — ✓ 漢字", "",
                                  "\\( not a paren", ")(" * 3])
def test_pdf_escapes_and_utf16(text):
    assert _pdf_text(_pdf({"/ExplorerSidecar": text}), "/ExplorerSidecar") == text


def test_pdf_hand_written_strings():
    def doc(s: bytes) -> bytes:
        return b"%PDF-1.7\n1 0 obj << /Key " + s + b" >> endobj\n%%EOF"

    assert _pdf_text(doc(b"(a\\101\\60b\\\nc)"), "/Key") == "aA0bc"  # octal escapes, a continued line
    assert _pdf_text(doc(b"<48 65 6c6c 6F>"), "/Key") == "Hello"  # hex with spaces
    assert _pdf_text(doc(b"<48656C6C6F7>"), "/Key") == "Hellop"  # an odd digit count is padded with 0
    assert _pdf_text(doc(b"\n  (spaced)"), "/Key") == "spaced"
    with pytest.raises(SidecarError, match="/Key string is not closed"):
        _pdf_text(b"%PDF-1.7 /Key <4865", "/Key")
    for bad, message in [(b"<4G>", "not valid hex"), (b"(open", "not closed"), (b"42", "not a string")]:
        with pytest.raises(SidecarError, match=message):
            _pdf_text(doc(bad), "/Key")
    with pytest.raises(SidecarError, match="not a PDF file"):
        _pdf_text(b"%!PS-Adobe", "/Key")


@given(text=st.text(st.characters(blacklist_characters="<"), max_size=200))
@settings(max_examples=40, deadline=None)
def test_svg_metadata_reads_the_first_block(text):
    svg = f'<svg><metadata id="other">no</metadata><metadata id="explorer-sidecar">{text}</metadata>' \
          f'<metadata id="explorer-sidecar">second</metadata></svg>'
    assert _svg_text(svg) == text
    assert _svg_text('<svg><metadata id="explorer-sidecar">unclosed') is None
    assert _svg_text("<svg/>") is None


# ---------------------------------------------------------------------------------------------- edges and limits
import json  # noqa: E402
import struct  # noqa: E402
import zlib  # noqa: E402

from explorer.export.sidecar import MAX_PNG_CHUNKS, MAX_SIDECAR_BYTES, _inflate, read_sidecar  # noqa: E402


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


SIG = b"\x89PNG\r\n\x1a\n"
IHDR = _chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 3, 8, 2, 0, 0, 0))


def test_png_reading_stops_at_the_image_data_or_the_end():
    text = _chunk(b"tEXt", b"explorer\x00found")
    assert _png_text(SIG + IHDR + text, "explorer") == "found"
    assert _png_text(SIG + IHDR + _chunk(b"IEND", b"") + text, "explorer") is None  # nothing after IEND
    assert _png_text(SIG + IHDR + _chunk(b"IDAT", b"x") + text, "explorer") is None  # nor after IDAT
    assert _png_text(SIG + IHDR, "explorer") is None  # a file that just ends
    assert _png_text(SIG + IHDR + text[:-6], "explorer") is None  # a chunk cut short
    with pytest.raises(SidecarError, match=r"^not a PNG file$"):
        _png_text(b"\x89PNG\r\n\x1a", "explorer")
    many = SIG + IHDR + _chunk(b"tEXt", b"other\x00x") * MAX_PNG_CHUNKS + text
    with pytest.raises(SidecarError, match=rf"^it has more than {MAX_PNG_CHUNKS} chunks before its image data$"):
        _png_text(many, "explorer")


def test_compressed_text_is_bounded_exactly_at_the_limit():
    ok = b"a" * MAX_SIDECAR_BYTES
    assert _inflate(zlib.compress(ok)) == ok
    with pytest.raises(SidecarError, match=r"^its sidecar text is larger than 1 MiB$"):
        _inflate(zlib.compress(ok + b"b"))
    with pytest.raises(SidecarError, match="larger than 1 MiB"):
        _inflate(zlib.compress(b"\0" * (64 * MAX_SIDECAR_BYTES)))  # a zip bomb: refused without inflating it all
    ztxt = _chunk(b"zTXt", b"explorer\x00\x00" + zlib.compress(b"x" * (MAX_SIDECAR_BYTES + 10)))
    with pytest.raises(SidecarError, match="larger than 1 MiB"):
        _png_text(SIG + IHDR + ztxt, "explorer")


def test_pdf_strings_edges():
    def doc(s: bytes, before: bytes = b"") -> bytes:
        return b"%PDF-1.7\n" + before + b"1 0 obj << /Key " + s + b" >> endobj\n%%EOF"

    assert _pdf_text(doc(b"(a\\qb)"), "/Key") == "aqb"  # an unknown escape is the character itself
    assert _pdf_text(doc(b"<4865>", before=b"2 0 obj << /A 1 >> endobj\n"), "/Key") == "He"  # a '>' earlier
    with pytest.raises(SidecarError, match="not valid hex"):
        _pdf_text(doc(b"<48X65>"), "/Key")
    with pytest.raises(SidecarError, match="/Key entry is not a string"):
        _pdf_text(doc(b"X(text)"), "/Key")
    with pytest.raises(SidecarError, match=r"^not a PDF file$"):
        _pdf_text(b"%PDF", "/Key")
    big = 8 * MAX_SIDECAR_BYTES
    assert len(_pdf_text(doc(b"<" + b"41" * (big // 2) + b">"), "/Key")) == big // 2  # exactly at the limit
    with pytest.raises(SidecarError, match=r"^its /Key string is larger than 1 MiB$"):
        _pdf_text(doc(b"<" + b"41" * (big // 2) + b"4>"), "/Key")
    lit = 4 * MAX_SIDECAR_BYTES
    assert len(_pdf_text(doc(b"(" + b"a" * lit + b")"), "/Key")) == lit
    with pytest.raises(SidecarError, match=r"^its /Key string is larger than 1 MiB$"):
        _pdf_text(doc(b"(" + b"a" * (lit + 1) + b")"), "/Key")


def test_svg_metadata_at_the_very_start():
    assert _svg_text('<metadata id="explorer-sidecar"></metadata>') == ""
    assert _svg_text('<metadata id="explorer-sidecar">x</metadata>') == "x"


def test_an_unknown_schema_is_named_shortly(tmp_path):
    p = tmp_path / "fig.json"
    p.write_text(json.dumps({"schema": "s" * 100}))
    with pytest.raises(SidecarError) as e:
        read_sidecar(p)
    assert str(e.value) == f"{p} is not an explorer figure sidecar (schema {repr('s' * 100)[:50]}…)."
    p.write_text(json.dumps({"schema": "old/0"}))
    with pytest.raises(SidecarError, match=r"\(schema 'old/0'\)\.$"):
        read_sidecar(p)
    p.write_text("[1, 2]")
    with pytest.raises(SidecarError, match=r"\(schema None\)\.$"):
        read_sidecar(p)


def test_a_zip_bomb_is_refused_without_inflating_it():
    """The refusal comes before the memory is spent: a 64 MiB bomb peaks at a few MiB."""
    import tracemalloc

    bomb = zlib.compress(b"\0" * (64 * MAX_SIDECAR_BYTES), 9)
    tracemalloc.start()
    try:
        with pytest.raises(SidecarError, match="larger than 1 MiB"):
            _inflate(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MAX_SIDECAR_BYTES, peak


def test_a_file_that_cannot_be_read_is_named(tmp_path, monkeypatch):
    from pathlib import Path

    p = tmp_path / "fig.json"
    p.write_text("{}")

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(SidecarError, match=r"^Cannot read .*fig\.json: \[Errno 13\] Permission denied\.$"):
        read_sidecar(p)
