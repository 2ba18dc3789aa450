"""Static rendering of plotly figures with kaleido, made byte-reproducible.

kaleido 1.x drives a headless Chromium (Debian's ``chromium`` on ``PATH``, or ``BROWSER_PATH``).
Starting it costs ~3 s, so one persistent kaleido server is started on first use and stopped
at exit.  What Chromium writes is then normalised so the same figure always gives the same
bytes:

* SVG: plotly.js names its clip paths after a random 6-hex id; it is replaced by a fixed one.
* PDF: rewritten with pypdf without creation dates, with fixed producer strings and a
  document id derived from the content.
* PNG: re-encoded with Pillow (deterministic zlib) with the physical resolution (pHYs chunk).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import threading
import warnings

import plotly.graph_objects as go

_lock = threading.Lock()
_server_started = False

FORMATS = ("pdf", "svg", "png")


class ExportError(RuntimeError):
    """Static export failed; the message says what to install or change."""


def _browser_hint() -> str:
    if shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome"):
        return ""
    return (" No Chromium was found on PATH: install Debian's `chromium` (`make sysdeps` does) or set "
            "BROWSER_PATH to a Chrome/Chromium executable.")


def _edge_to_edge_pdf() -> bool:
    """Make kaleido print PDFs without Chromium's 0.1 in margins.

    kaleido 1.x sizes the CSS page to the figure but prints with 0.1 in margins, so Chromium
    shrinks the figure to fit (fonts ~3-6% smaller than asked, a white border).  Its
    ``print_pdf`` helper is replaced by one that prints with zero margins.  Returns False
    (and the margins stay) if this kaleido version has no such helper.
    """
    try:
        from kaleido._kaleido_tab import _devtools_utils as dt
        from kaleido._kaleido_tab._errors import _raise_error
    except ImportError:
        return False
    if getattr(dt.print_pdf, "_explorer", False):
        return True

    async def print_pdf(tab):
        params = {"printBackground": True, "marginTop": 0, "marginBottom": 0, "marginLeft": 0, "marginRight": 0,
                  "preferCSSPageSize": True, "pageRanges": "1"}
        response = await tab.send_command("Page.printToPDF", params=params)
        _raise_error(response)
        return response.get("result", {}).get("data")

    print_pdf._explorer = True
    dt.print_pdf = print_pdf
    return True


def _ensure_server() -> None:
    global _server_started
    if _server_started:
        return
    import kaleido

    _edge_to_edge_pdf()

    try:
        kaleido.start_sync_server(silence_warnings=True)
    except Exception as e:  # kaleido raises its own errors when no browser can be started
        raise ExportError(f"Could not start kaleido's browser for static export: {e}.{_browser_hint()}") from e
    _server_started = True
    atexit.register(_stop_server)


STOP_TIMEOUT_S = 20.0


def _stop_server(timeout: float | None = None) -> None:
    """Close kaleido's browser, waiting at most ``timeout`` seconds (default ``STOP_TIMEOUT_S``).

    kaleido's own ``close`` joins its server thread without a limit; when Chromium does not answer the
    close (seen once under a loaded CI machine) the interpreter never exits after the work is done. Here the
    close runs in a daemon thread; past the limit, the browser processes this process started are killed and
    the server is marked closed, so kaleido's own exit hook returns at once."""
    global _server_started
    if not _server_started:
        return
    import kaleido

    def close() -> None:
        with contextlib.suppress(Exception):
            kaleido.stop_sync_server(silence_warnings=True)

    closer = threading.Thread(target=close, name="kaleido-close", daemon=True)
    closer.start()
    closer.join(STOP_TIMEOUT_S if timeout is None else timeout)
    if closer.is_alive():
        logging.getLogger(__name__).warning("kaleido's browser did not close in time; killing it")
        _kill_browser_children()
        with contextlib.suppress(Exception):
            kaleido._global_server._initialized = False  # its thread is a daemon: it no longer blocks exit
    _server_started = False


def _kill_browser_children() -> list[int]:
    """Kill this process's Chromium descendants (kaleido's browser); return their pids."""
    import signal

    import psutil

    killed = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "chrom" in child.name().lower():
                child.send_signal(signal.SIGKILL)
                killed.append(child.pid)
    return killed


def _forget_server_after_fork() -> None:
    """In a forked child (multiprocessing, a DataLoader worker, a test runner) the server's thread and browser
    belong to the parent: marked running but never answering, every export would wait forever. Forget them so
    the child starts its own on first use."""
    global _server_started, _lock
    _lock = threading.Lock()  # the parent may have held it while forking
    if not _server_started:
        return
    _server_started = False
    with contextlib.suppress(Exception):
        import kaleido

        kaleido._global_server._initialized = False  # its thread did not survive the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_server_after_fork)


def render_raw(fig: go.Figure, fmt: str, *, scale: float = 1.0) -> bytes:
    """Chromium's bytes for ``fig`` in ``fmt`` (``"png"``, ``"svg"`` or ``"pdf"``), not normalised."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; choose from {FORMATS}.")
    with _lock:
        _ensure_server()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "kopts ignored when using a server"
            try:
                return fig.to_image(format=fmt, scale=scale, width=fig.layout.width, height=fig.layout.height)
            except Exception as e:
                raise ExportError(f"Static export to {fmt.upper()} failed: {e}.{_browser_hint()}") from e


_SVG_UID = re.compile(rb'id="defs-([0-9a-f]{6})"')


def normalise_svg(svg: bytes, metadata: str | None = None) -> bytes:
    """Replace plotly.js's random clip-path id by a fixed one; optionally add a ``<metadata>`` element."""
    m = _SVG_UID.search(svg)
    if m:
        svg = svg.replace(m.group(1), b"e0e0e0")
    if metadata is not None:
        from xml.sax.saxutils import escape

        block = f"<metadata id=\"explorer-sidecar\">{escape(metadata)}</metadata>".encode()
        end = svg.find(b">", svg.find(b"<svg")) + 1
        svg = svg[:end] + block + svg[end:]
    return svg


def normalise_pdf(pdf: bytes, info: dict[str, str] | None = None, size_pt: tuple[float, float] | None = None) -> bytes:
    """Rewrite a PDF with fixed document information and no timestamps.

    Args:
        info: extra document-information entries, e.g. ``{"/Title": ..., "/explorer:sidecar": json}``.
        size_pt: exact page size ``(width, height)`` in points.  Chromium rounds the page to
            whole CSS pixels and a little more (≤ 0.3 pt); the page is scaled to the exact size.
    """
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import ArrayObject, ByteStringObject

    with quiet_pypdf():
        reader = PdfReader(io.BytesIO(pdf))
        writer = PdfWriter(clone_from=reader)
    if size_pt is not None:
        for page in writer.pages:
            page.scale_to(float(size_pt[0]), float(size_pt[1]))
    meta = {"/Producer": "explorer (Chromium via kaleido, pypdf)", "/Creator": "explorer"}
    meta.update(info or {})
    writer.add_metadata(meta)
    info_obj = writer._info.get_object() if writer._info is not None else {}
    for key in ("/CreationDate", "/ModDate"):
        if key in info_obj:
            del info_obj[key]
    # The document id must not depend on Chromium's timestamps: write once with a blank id,
    # then use the hash of that (timestamp-free) file as the id.
    out = io.BytesIO()
    for _ in range(2):
        digest = hashlib.md5(out.getvalue(), usedforsecurity=False).digest()
        writer._ID = ArrayObject([ByteStringObject(digest), ByteStringObject(digest)])
        out = io.BytesIO()
        with quiet_pypdf():
            writer.write(out)
    return out.getvalue()


@contextlib.contextmanager
def quiet_pypdf():
    """pypdf logs harmless repairs of Chromium's PDFs ("Object count ... exceeds trailer size") as warnings."""
    log = logging.getLogger("pypdf")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def normalise_png(png: bytes, dpi: int, text: dict[str, str] | None = None) -> bytes:
    """Re-encode a PNG with its resolution (``dpi``) and ``text`` chunks (iTXt, UTF-8)."""
    from PIL import Image, PngImagePlugin

    im = Image.open(io.BytesIO(png))
    im.load()
    meta = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        meta.add_itxt(k, v)
    out = io.BytesIO()
    im.save(out, format="PNG", pnginfo=meta, dpi=(dpi, dpi), optimize=False, compress_level=6)
    return out.getvalue()
