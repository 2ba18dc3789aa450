"""Paper styling: turn any explorer figure into one sized and typeset for a venue.

Pure plotly (no files, no browser): :func:`paper_style` takes a figure and a
:class:`explorer.export.Preset` and returns a styled copy — exact width, fonts in points,
panel letters (a, b, c, ...), labelled colour bars and colour-blind-safe colour scales.
"""

from __future__ import annotations

import copy
import functools
import html
import math
import re
import string
from dataclasses import dataclass

import plotly.graph_objects as go

#: Colour scales that stay readable for the common colour-vision deficiencies (perceptually
#: uniform sequential maps and the diverging maps built from blue/orange or blue/red ends).
SAFE_COLORSCALES = {
    "viridis", "cividis", "plasma", "inferno", "magma", "greys", "gray", "blues", "purples", "oranges",
    "ylgnbu", "ylorbr", "rdbu", "rdbu_r", "puor", "brbg", "piyg", "prgn", "viridis_r", "cividis_r", "greys_r",
    "plasma_r", "inferno_r", "magma_r", "blues_r",
}
#: Replacement for scales that are not safe (jet, rainbow, hot, ...).
FALLBACK_COLORSCALE = "Viridis"


_NAMED: dict | None = None


def _key(cs) -> tuple:
    return tuple((round(float(a), 6), str(b).replace(" ", "").lower()) for a, b in cs)


def _scale_name(cs) -> str | None:
    """Lower-case name of a colour scale given as a name or as plotly's expanded list; None if custom."""
    global _NAMED
    if cs is None:
        return None
    if isinstance(cs, str):
        return cs.lower()
    if _NAMED is None:
        import plotly.colors as pc

        _NAMED = {}
        for n in pc.named_colorscales():
            for suffix in ("", "_r"):
                try:
                    key = _key(pc.get_colorscale(n + suffix))
                except Exception:
                    continue
                _NAMED.setdefault(key, n + suffix)
    try:
        key = _key(cs)
    except (TypeError, ValueError):
        return None
    return _NAMED.get(key)  # explicit lists of colours are the caller's choice


def _subplot_domains(fig: go.Figure) -> list[tuple[str, tuple, tuple]]:
    """``[(axis suffix, x domain, y domain)]`` of every subplot that has a trace."""
    seen, out = set(), []
    layout = fig.layout
    for tr in fig.data:
        xa = getattr(tr, "xaxis", None) or "x"
        ya = getattr(tr, "yaxis", None) or "y"
        if (xa, ya) in seen:
            continue
        seen.add((xa, ya))
        xd = layout[f"xaxis{xa[1:]}"].domain or (0, 1)
        yd = layout[f"yaxis{ya[1:]}"].domain or (0, 1)
        out.append((xa[1:], tuple(xd), tuple(yd)))
    # Reading order: top row first, then left to right.
    out.sort(key=lambda d: (-round(d[2][1], 3), round(d[1][0], 3)))
    return out


def paper_style(fig: go.Figure, preset, *, height_in: float | None = None, letters: bool = True,
                title: bool = False, letter_offset: int = 0, rows: int | None = None,
                title_pt: float | None = None) -> tuple[go.Figure, list[str]]:
    """A copy of ``fig`` styled for ``preset``.

    Args:
        fig: any figure built by :mod:`explorer.viz`.
        preset: :class:`explorer.export.Preset` (or a preset name).
        height_in: figure height in inches; default keeps ``fig``'s aspect ratio.
        letters: add bold panel letters at the top-left corner of every subplot.
        title: keep the figure's title (papers put it in the LaTeX caption instead).
        letter_offset: start lettering at ``"a" + letter_offset``.
        rows: ``None`` styles the panels where the figure put them (what every export did before layouts were
            checked; old sidecars reproduce with it).  A number lays a one-row strip of image panels out in that
            many rows (reading order, left-aligned; ignored for other figures), makes room for row titles beside
            the panels and thins colour-bar ticks that would collide (see :func:`fit_layout`, which picks it).
        title_pt: size of panel / row / column titles in points (default the preset's ``font_pt``); only with
            ``rows``.
    Returns:
        ``(figure, notes)``; notes list every change a reader should know about (e.g. a
        colour scale that was replaced).
    """
    from .presets import get_preset

    p = get_preset(preset)
    out = go.Figure(copy.deepcopy(fig.to_dict()))
    notes: list[str] = []
    w0 = out.layout.width or 1000
    h0 = out.layout.height or 450
    width = p.width_px
    height = height_in * 96.0 if height_in else h0 * width / w0
    body, tick = p.px(p.font_pt), p.px(p.tick_pt)
    out.update_layout(
        width=width, height=height, font=dict(family=p.font_family, size=body, color="black"),
        paper_bgcolor="white", plot_bgcolor="white", dragmode=False, hovermode=False,
        legend=dict(font=dict(size=tick)),
    )
    if not title:
        out.update_layout(title=None)
    top = (body * 1.6 if any(a.yref == "paper" for a in out.layout.annotations) else 4) + (body * 1.3 if title else 0)
    out.update_layout(margin=dict(l=4 + (body * 3 if _has_tick_labels(out, "y") else 0), r=4,
                                  t=top + (p.px(p.letter_pt) * 0.2 if letters else 0),
                                  b=4 + (body * 3 if _has_tick_labels(out, "x") else 0)
                                  + (body * 1.6 if any(a.yref == "paper" and a.yanchor == "top" and (a.y or 0) <= 0.001
                                                       for a in out.layout.annotations) else 0)))
    out.update_xaxes(tickfont=dict(size=tick), title_font=dict(size=body))
    out.update_yaxes(tickfont=dict(size=tick), title_font=dict(size=body))
    out.update_annotations(font=dict(size=body, family=p.font_family))
    lifted = [a for a in out.layout.annotations if a.name == "row-title"]
    for a in lifted:  # row titles (annotations named "row-title") sit on their panels' tops …
        a.yshift = 0
    if letters and lifted:  # … or a letter's line up, clear of the panel letters
        lift = _label_size("<b>a</b>", p.px(p.letter_pt), p.font_family)[1] + 4  # a letter's box (+ plotly's pads)
        for a in lifted:
            a.yshift = lift
        domains = _subplot_domains(out)
        first_row = max((yd[1] for _s, _xd, yd in domains), default=1.0)
        if any(abs(float(a.y or 0) - first_row) < 0.02 for a in lifted):
            out.update_layout(margin=dict(t=float(out.layout.margin.t or 0) + lift))
    legible = rows is not None
    if legible:
        if letters:  # a letter standing alone above a panel needs a line of its own, not a 6 px strip of margin
            t = float(out.layout.margin.t or 0)
            out.update_layout(margin=dict(t=max(t, p.px(p.letter_pt) * 1.35 + 2 + (body * 1.3 if title else 0))))
        if title_pt is not None:
            out.update_annotations(font=dict(size=p.px(float(title_pt))))
        _room_for_side_titles(out)
        _centre_panel_labels(out)
        strip = _strip_panels(out)
        if strip is not None and int(rows) > 1:
            _reflow(out, strip, int(rows), band=body * 1.6 + (p.px(p.letter_pt) * 0.2 if letters else 0) + 2)
    for i, tr in enumerate(out.data):
        tr.uid = f"t{i}"  # plotly.js names gradients and clip paths after trace uids: random unless set
        cs = getattr(tr, "colorscale", None) if "colorscale" in tr else None
        name = _scale_name(cs)
        if name is not None and name not in SAFE_COLORSCALES:
            tr.colorscale = FALLBACK_COLORSCALE
            notes.append(f"colour scale {name!r} of trace {tr.name!r} replaced by {FALLBACK_COLORSCALE} (colour-blind safe)")
        if hasattr(tr, "colorbar") and getattr(tr, "showscale", None) is not False and tr.type in ("heatmap", "contour"):
            cb = tr.colorbar
            label = (cb.title.text if cb.title and cb.title.text else None) or tr.name or "value"
            tr.colorbar.update(title=dict(text=label, side="right", font=dict(size=body)), tickfont=dict(size=tick),
                               thickness=max(6.0, body * 0.8), outlinewidth=0)
    for ax in [k for k in out.layout if k.startswith("coloraxis")]:
        ca = out.layout[ax]
        name = _scale_name(ca.colorscale)
        if name is not None and name not in SAFE_COLORSCALES:
            ca.colorscale = FALLBACK_COLORSCALE
            notes.append(f"colour scale {name!r} of {ax} replaced by {FALLBACK_COLORSCALE} (colour-blind safe)")
        label = (ca.colorbar.title.text if ca.colorbar and ca.colorbar.title and ca.colorbar.title.text else "value")
        ca.colorbar.update(title=dict(text=label, side="right", font=dict(size=body)), tickfont=dict(size=tick),
                           thickness=max(6.0, body * 0.8), outlinewidth=0)
    if not height_in:
        h = _content_height(out)
        if h is not None:
            out.update_layout(height=h)
    if legible:
        if strip is None and _wrap_titles(out) and not height_in:
            h = _content_height(out)
            if h is not None:
                out.update_layout(height=h)
        _thin_colorbar_ticks(out, tick)
    if letters:
        titles = [a for a in out.layout.annotations if a.xref == "paper" and a.yref == "paper" and a.yanchor == "bottom"]
        for i, (_suffix, xd, yd) in enumerate(_subplot_domains(out)):
            letter = f"<b>{_letter(i + letter_offset)}</b>"
            # A subplot title centred over this panel gets the letter in front (no collision);
            # otherwise the letter sits above the panel's top-left corner.
            own = [a for a in titles if xd[0] <= a.x <= xd[1] and abs(a.y - yd[1]) < 0.02 and a.text
                   and a.name != "row-title"]
            if own:
                own[0].text = f"<span style='font-size:{p.px(p.letter_pt):.2f}px'>{letter}</span>  {own[0].text}"
                continue
            out.add_annotation(
                text=letter, x=xd[0], y=yd[1], xref="paper", yref="paper",
                xanchor="left", yanchor="bottom", showarrow=False, font=dict(size=p.px(p.letter_pt), family=p.font_family),
            )
    return out, notes


def _content_height(fig: go.Figure) -> float | None:
    """Height (px) at which aspect-locked panels (images) fill their domains; None if there are none."""
    lay = fig.layout
    m = lay.margin
    plot_w = float(lay.width) - float(m.l or 0) - float(m.r or 0)
    need = 0.0
    for suffix, xd, yd in _subplot_domains(fig):
        xa, ya = lay[f"xaxis{suffix}"], lay[f"yaxis{suffix}"]
        has_image = any(tr.type == "image" and (tr.xaxis or "x")[1:] == suffix for tr in fig.data)
        if not (has_image or ya.scaleanchor):
            continue
        xr = xa.range or (0, 1)
        yr = ya.range or (0, 1)
        aspect = abs(yr[1] - yr[0]) / max(abs(xr[1] - xr[0]), 1e-9) if (xa.range and ya.range) else 1.0
        need = max(need, plot_w * (xd[1] - xd[0]) * aspect / max(yd[1] - yd[0], 1e-9))
    if need <= 0:
        return None
    return need + float(m.t or 0) + float(m.b or 0)


def _aspect(fig: go.Figure, suffix: str) -> float:
    """Height / width of subplot ``suffix``'s data ranges (1 without ranges)."""
    xa, ya = fig.layout[f"xaxis{suffix}"], fig.layout[f"yaxis{suffix}"]
    if not (xa.range and ya.range):
        return 1.0
    return abs(ya.range[1] - ya.range[0]) / max(abs(xa.range[1] - xa.range[0]), 1e-9)


def _strip_panels(fig: go.Figure) -> "list[tuple[str, tuple, tuple]] | None":
    """The subplots of a one-row strip of aspect-locked panels (images, maps), left to right; None for other figures."""
    panels = _subplot_domains(fig)
    if len(panels) < 2 or len({(round(yd[0], 3), round(yd[1], 3)) for _s, _x, yd in panels}) != 1:
        return None
    for suffix, _xd, _yd in panels:
        has_image = any(tr.type == "image" and (tr.xaxis or "x")[1:] == suffix for tr in fig.data)
        if not (has_image or fig.layout[f"yaxis{suffix}"].scaleanchor):
            return None
    return sorted(panels, key=lambda d: d[1][0])


def _reflow(out: go.Figure, panels, rows: int, *, band: float) -> None:
    """Lay the one-row strip ``panels`` out in ``rows`` rows (in place): reading order, left-aligned, ``band`` pixels
    between rows for the titles; titles follow their panels, a panel's own colour bar stays beside it."""
    n = len(panels)
    cols = math.ceil(n / max(1, min(rows, n)))
    rows = math.ceil(n / cols)
    lay = out.layout
    plot_w = float(lay.width) - float(lay.margin.l or 0) - float(lay.margin.r or 0)
    gaps = [b[1][0] - a[1][1] for a, b in zip(panels, panels[1:])]
    hs = max(min(gaps), 0.0)
    w = (1 - (cols - 1) * hs) / cols
    h = max(w * plot_w * _aspect(out, suffix) for suffix, _xd, _yd in panels)
    total = rows * h + (rows - 1) * band
    titles = [a for a in lay.annotations if a.xref == "paper" and a.yref == "paper" and a.yanchor == "bottom" and a.text]
    moves = []
    for k, (suffix, xd, yd) in enumerate(panels):  # decided on the old domains before any moves
        i, j = divmod(k, cols)
        x0, y1 = j * (w + hs), 1 - i * (h + band) / total
        own = [a for a in titles if xd[0] <= a.x <= xd[1] and abs(a.y - yd[1]) < 0.02]
        moves.append((k, j, suffix, (x0, min(1.0, x0 + w)), (max(0.0, y1 - h / total), y1), own))
    for k, j, suffix, xd, yd, own in moves:
        lay[f"xaxis{suffix}"].domain = xd
        lay[f"yaxis{suffix}"].domain = yd
        for a in own:
            a.x, a.y = (xd[0] + xd[1]) / 2, yd[1]
        for tr in out.data:
            if ((tr.xaxis or "x")[1:] != suffix or tr.type not in ("heatmap", "contour") or tr.showscale is False
                    or getattr(tr, "coloraxis", None)):
                continue
            beside = {"x": xd[1] + 0.01, "xanchor": "left"} if k == n - 1 and j < cols - 1 else {}  # an empty slot
            tr.colorbar.update(y=(yd[0] + yd[1]) / 2, yanchor="middle", len=yd[1] - yd[0], lenmode="fraction", **beside)


def _centre_panel_labels(out: go.Figure) -> None:
    """Labels placed at a panel's centre line are centred on it: plotly's "auto" anchor would pin one near the page's
    left or right third by its left or right end, off its panel."""
    centres = [(xd[0] + xd[1]) / 2 for _s, xd, _yd in _subplot_domains(out)]
    for a in out.layout.annotations:
        if (a.xref == "paper" and a.xanchor in (None, "auto") and not a.showarrow and a.x is not None
                and any(abs(float(a.x) - c) < 0.005 for c in centres)):
            a.xanchor = "center"


def _rotated(a) -> bool:
    return a.textangle is not None and abs(abs(float(a.textangle)) - 90) < 1


def _room_for_side_titles(out: go.Figure) -> None:
    """Row titles (text turned 90° right of the panels) sit just right of the panels, with a margin wide enough to
    hold them and colour bars moved beyond them (plotly puts them 2% inside the last column and the page clips them)."""
    side = [a for a in out.layout.annotations if a.xref == "paper" and _rotated(a) and (a.x or 0) >= 0.9
            and a.xanchor == "left"]
    if not side:
        return
    right = max([xd[1] for _s, xd, _yd in _subplot_domains(out)] or [1.0])
    line = max(float(a.font.size or 12) for a in side) * 1.3
    for a in side:
        a.x, a.xshift = right, 2
    out.update_layout(margin=dict(r=max(float(out.layout.margin.r or 0), line + 6)))
    for tr in out.data:
        if "colorbar" in tr and tr.type in ("heatmap", "contour") and not getattr(tr, "coloraxis", None):
            tr.colorbar.xpad = 10 + line
    for ax in [k for k in out.layout if k.startswith("coloraxis")]:
        out.layout[ax].colorbar.xpad = 10 + line


def _thin_colorbar_ticks(out: go.Figure, tick_px: float) -> None:
    """Fewer ticks on a colour bar too short for plotly's four or more: tick labels never touch."""
    lay = out.layout
    plot_h = float(lay.height) - float(lay.margin.t or 0) - float(lay.margin.b or 0)
    bars = [tr.colorbar for tr in out.data if "colorbar" in tr and tr.type in ("heatmap", "contour")
            and tr.showscale is not False and not getattr(tr, "coloraxis", None)]
    bars += [lay[k].colorbar for k in lay if k.startswith("coloraxis")]
    for cb in bars:
        length = float(cb.len if cb.len is not None else 1.0) * (plot_h if cb.lenmode != "pixels" else 1.0)
        if length < 4.5 * 2.2 * tick_px:
            cb.nticks = max(2, int(length / (2.2 * tick_px)))


# ---------------------------------------------------------------------------------------------- legibility
class LayoutWarning(UserWarning):
    """Panel titles or letters of an exported figure overlap or leave the page."""


_FONT_FILES = {
    "liberation serif": ("LiberationSerif-Regular.ttf", "LiberationSerif-Bold.ttf"),
    "liberation sans": ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf"),
    "dejavu serif": ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"),
    "dejavu sans": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    "serif": ("LiberationSerif-Regular.ttf", "LiberationSerif-Bold.ttf"),
    "sans-serif": ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf"),
}


@functools.lru_cache(maxsize=32)
def _font(family: str, bold: bool):
    """The first installed face of a CSS font list (Pillow, at 100 px), or None (widths are then estimated)."""
    from PIL import ImageFont

    for name in (f.strip().strip("'\"").lower() for f in family.split(",")):
        files = _FONT_FILES.get(name)
        if files is None:
            continue
        try:
            return ImageFont.truetype(files[bold], 100)
        except OSError:
            continue
    return None


def text_width(text: str, size_px: float, family: str, *, bold: bool = False) -> float:
    """Width in pixels of one line of plain ``text`` set in ``family`` at ``size_px`` (the installed face's metrics;
    0.6 em per character where no face of the list is installed)."""
    f = _font(family, bold)
    if f is None:
        return 0.6 * size_px * len(text)
    return f.getlength(text) * size_px / 100.0


_TAG = re.compile(r"<(/?)([a-zA-Z]+)([^>]*)>")
_SIZE = re.compile(r"font-size\s*:\s*([0-9.]+)px")


def _label_size(text: str, size_px: float, family: str) -> tuple[float, float]:
    """``(width, height)`` in pixels of an annotation's text (plotly's HTML subset: ``<b>``, sized ``<span>``, ``<br>``)."""
    lines, widths, heights = [[]], [], []
    stack = [(size_px, False)]
    pos = 0
    for m in [*_TAG.finditer(text), None]:
        chunk = text[pos:m.start() if m else len(text)]
        if chunk:
            lines[-1].append((html.unescape(chunk), *stack[-1]))
        if m is None:
            break
        pos = m.end()
        closing, tag = m.group(1) == "/", m.group(2).lower()
        if tag == "br":
            lines.append([])
        elif closing:
            if len(stack) > 1:
                stack.pop()
        else:
            size, bold = stack[-1]
            sm = _SIZE.search(m.group(3))
            stack.append((float(sm.group(1)) if sm else size, bold or tag == "b"))
    for parts in lines:
        line = "".join(t for t, _s, _b in parts)
        collapsed = re.sub(r"\s+", " ", line)
        w, seen = 0.0, ""
        for t, size, bold in parts:  # Chromium collapses runs of spaces in SVG text
            t = re.sub(r"\s+", " ", t)
            if seen.endswith(" ") and t.startswith(" "):
                t = t[1:]
            w += text_width(t, size, family, bold=bold)
            seen += t
        widths.append(w if collapsed.strip() else 0.0)
        heights.append(max([s for _t, s, _b in parts] or [size_px]) * 1.3)
    return max(widths), sum(heights)


def label_boxes(fig: go.Figure, preset=None) -> "list[tuple[str, tuple[float, float, float, float]]]":
    """Where the texts placed on the page (panel titles and letters, row and column titles) land on a styled figure.

    Args:
        fig: a figure from :func:`paper_style`.
    Returns:
        ``[(plain text, (x0, y0, x1, y1))]`` in pixels from the page's top-left corner (estimated from the fonts'
        metrics and plotly's placement rules; colour bars on the right are assumed to take their usual room).
    """
    lay = fig.layout
    W, H = float(lay.width), float(lay.height)
    m = lay.margin
    l, r, t, b = (float(v or 0) for v in (m.l, m.r, m.t, m.b))
    r += _colorbar_room(fig, W - l - r)
    pw, ph = max(W - l - r, 1.0), max(H - t - b, 1.0)
    family = (lay.font.family if lay.font and lay.font.family else "sans-serif")
    out = []
    for a in _paper_labels(fig):
        size = float(a.font.size) if a.font and a.font.size else float(lay.font.size or 12)
        w, h = _label_size(str(a.text), size, a.font.family if a.font and a.font.family else family)
        if _rotated(a):
            w, h = h, w
        w, h = w + 2, h + 2  # plotly's 1 px border pad
        x = l + float(a.x) * pw + float(a.xshift or 0)
        y = t + (1 - float(a.y)) * ph - float(a.yshift or 0)
        # plotly's "auto" anchor of a paper annotation without an arrow: the side nearest its position
        xa = a.xanchor if a.xanchor not in (None, "auto") else _auto_anchor(float(a.x), "left", "center", "right")
        ya = a.yanchor if a.yanchor not in (None, "auto") else _auto_anchor(float(a.y), "bottom", "middle", "top")
        x0 = x - {"left": 0, "center": w / 2, "right": w}[xa]
        y0 = y - {"top": 0, "middle": h / 2, "bottom": h}[ya]
        plain = re.sub(r"\s+", " ", html.unescape(_TAG.sub(" ", str(a.text)))).strip()
        out.append((plain, (x0, y0, x0 + w, y0 + h)))
    return out


def _auto_anchor(pos: float, low: str, mid: str, high: str) -> str:
    return low if pos < 1 / 3 else high if pos > 2 / 3 else mid


def _paper_labels(fig: go.Figure) -> list:
    """The annotations placed on the page (paper coordinates, with text), in the order :func:`label_boxes` lists them."""
    return [a for a in fig.layout.annotations if a.xref == "paper" and a.yref == "paper" and a.text]


def _collisions(fig: go.Figure) -> "tuple[list, list[tuple[int, int | None]]]":
    """``(boxes, [(i, j)])``: pairs of labels closer than a quarter of the body size, ``(i, None)`` off the page."""
    boxes = label_boxes(fig)
    W, H = float(fig.layout.width), float(fig.layout.height)
    gap = 0.25 * float(fig.layout.font.size or 12)
    found = []
    for i, (_ta, a) in enumerate(boxes):
        if a[0] < -0.5 or a[1] < -0.5 or a[2] > W + 0.5 or a[3] > H + 0.5:
            found.append((i, None))
        for j in range(i + 1, len(boxes)):
            b = boxes[j][1]
            if min(a[2], b[2]) - max(a[0], b[0]) > -gap and min(a[3], b[3]) - max(a[1], b[1]) > 0:
                found.append((i, j))
    return boxes, found


def _wrap_titles(out: go.Figure) -> bool:
    """Break each plain title that collides or leaves the page at the space that balances its two lines (the words
    stay, so the meaning does), when the room above it (a title over a panel) or the margin (a label under the last
    row, a title over the first) can take the second line; returns whether any title was broken."""
    lay = out.layout
    labels = _paper_labels(out)
    _boxes, found = _collisions(out)
    bad = sorted({k for pair in found for k in pair if k is not None})
    W, H = float(lay.width), float(lay.height)
    ph = max(H - float(lay.margin.t or 0) - float(lay.margin.b or 0), 1.0)
    pw = max(W - float(lay.margin.l or 0) - float(lay.margin.r or 0)
             - _colorbar_room(out, W - float(lay.margin.l or 0) - float(lay.margin.r or 0)), 1.0)
    domains = []
    for suffix, xd, yd in _subplot_domains(out):  # where each panel's content ends: images shrink to their aspect
        locked = any(tr.type == "image" and (tr.xaxis or "x")[1:] == suffix for tr in out.data) or \
            lay[f"yaxis{suffix}"].scaleanchor
        span = min(yd[1] - yd[0], (xd[1] - xd[0]) * pw * _aspect(out, suffix) / ph) if locked else yd[1] - yd[0]
        mid = (yd[0] + yd[1]) / 2
        domains.append((suffix, xd, (mid - span / 2, mid + span / 2) if locked else yd))
    grow_t = grow_b = 0.0
    wrapped = False
    for k in bad:
        a = labels[k]
        text = str(a.text)
        if "<" in text or " " not in text.strip() or _rotated(a) or a.yanchor not in ("bottom", "top"):
            continue
        size = float(a.font.size or lay.font.size or 12)
        family = a.font.family or lay.font.family or "sans-serif"
        line = size * 1.3
        words = text.split(" ")
        cut = min(range(1, len(words)), key=lambda i: max(text_width(" ".join(words[:i]), size, family),
                                                         text_width(" ".join(words[i:]), size, family)))
        if a.yanchor == "bottom":
            above = [yd[0] for _s, xd, yd in domains if xd[0] <= a.x <= xd[1] and yd[0] > a.y + 1e-6]
            if above and (min(above) - a.y) * ph < 2 * line + 2:
                continue  # no room between this title and the panel above it
            if not above:
                grow_t = line
        elif a.y > 0.01:
            continue
        else:
            grow_b = line
        a.text = " ".join(words[:cut]) + "<br>" + " ".join(words[cut:])
        wrapped = True
    if grow_t or grow_b:
        out.update_layout(margin=dict(t=float(lay.margin.t or 0) + grow_t, b=float(lay.margin.b or 0) + grow_b))
    return wrapped


def _colorbar_room(fig: go.Figure, plot_w: float) -> float:
    """Pixels the colour bars right of the plot push the right margin out by (plotly's automargin), estimated."""
    lay = fig.layout
    tick = float(lay.font.size or 12) * 0.9
    room = 0.0
    bars = [(tr.colorbar, tr.zmax) for tr in fig.data if "colorbar" in tr and tr.type in ("heatmap", "contour")
            and tr.showscale is not False and not getattr(tr, "coloraxis", None)]
    used = {getattr(tr, "coloraxis", None) for tr in fig.data} - {None}
    bars += [(lay[k].colorbar, lay[k].cmax) for k in lay if k.startswith("coloraxis") and k in used]
    for cb, top in bars:
        x = 1.02 if cb.x is None else float(cb.x)
        if x < 0.99:
            continue
        if cb.tickfont and cb.tickfont.size:
            tick = float(cb.tickfont.size)
        digits = max(4, len(f"{float(top):.2g}") + 1) if top is not None else 5
        title = (float(cb.title.font.size or tick) * 1.3) if cb.title and cb.title.text else 0.0
        xpad = 10.0 if cb.xpad is None else float(cb.xpad)
        room = max(room, (x - 1) * plot_w + 2 * xpad + float(cb.thickness or 30) + 4 + digits * 0.55 * tick + title)
    return max(0.0, room - float(lay.margin.r or 0))


def layout_problems(fig: go.Figure, preset=None) -> list[str]:
    """What is not legible in a styled figure: panel titles / letters that overlap or nearly touch (closer than a
    quarter of their font size), and texts that leave the page.  ``[]`` when every label is clear."""
    boxes, found = _collisions(fig)
    return [f"{boxes[i][0]!r} runs off the page" if j is None else f"{boxes[i][0]!r} touches {boxes[j][0]!r}"
            for i, j in found]


@dataclass(frozen=True)
class PanelLayout:
    """How an exported figure's panels are laid out (what :func:`fit_layout` chose or checked).

    Attributes:
        rows: rows a one-row strip of panels is laid out in (1 for other figures: they keep their grid).
        title_pt: panel-title size in points (``None``: the preset's ``font_pt``).
        problems: what stays illegible (empty when every title and letter is clear).
        proposal: a number of rows that would be legible, when ``problems`` is not empty and one exists.
    """

    rows: int
    title_pt: float | None
    problems: tuple = ()
    proposal: int | None = None

    def note(self, preset) -> str | None:
        """The warning an export shows and records when ``problems`` is not empty (``None`` otherwise)."""
        if not self.problems:
            return None
        from .presets import get_preset

        p = get_preset(preset)
        size = self.title_pt if self.title_pt is not None else p.font_pt
        shown = "; ".join(self.problems[:3]) + (f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else "")
        fix = (f"export with rows={self.proposal} to lay the panels out legibly" if self.proposal is not None else
               "no number of rows fits: choose a wider preset (e.g. double-column) or fewer panels")
        return (f"Panel titles are not legible on {p.name} ({p.width_in:.2f} in) with {self.rows} "
                f"row{'s' if self.rows != 1 else ''} at {size:g} pt: {shown}; {fix}.")


def _sizes(p) -> list[float]:
    """Title sizes tried, from the preset's body size down to its minimum in half points."""
    sizes, s = [], float(p.font_pt)
    while s >= p.min_font_pt - 1e-9:
        sizes.append(round(s, 2))
        s -= 0.5
    return sizes or [float(p.font_pt)]


def fit_layout(fig: go.Figure, preset, *, rows: "int | str" = "auto", title_pt: float | None = None,
               height_in: float | None = None, letters: bool = True, title: bool = False) -> PanelLayout:
    """Choose (or check) the layout an export of ``fig`` gets on ``preset`` so that titles and letters stay clear.

    ``rows="auto"``: one row if the titles fit, shrinking them down to the preset's ``min_font_pt`` first; otherwise
    two rows, three, ... (a one-row strip of image panels only; other figures keep their grid and only shrink
    titles).  A number keeps that many rows (the user's choice) and only shrinks titles; when that is not enough,
    ``problems`` says what collides and ``proposal`` the fewest rows that would fit.  With ``title_pt`` given as
    well nothing is searched: the layout is checked as it is (how ``reproduce`` rebuilds a recorded export).
    """
    from .presets import get_preset

    p = get_preset(preset)
    strip = _strip_panels(fig)
    n = len(strip) if strip is not None else 1
    sizes = _sizes(p)

    def problems(r: int, t: float | None) -> list[str]:
        styled, _ = paper_style(fig, p, height_in=height_in, letters=letters, title=title, rows=r,
                                title_pt=None if t is None or t == p.font_pt else t)
        return layout_problems(styled, p)

    def norm(t: float | None) -> float | None:
        return None if t is None or t == p.font_pt else float(t)

    def first_fit(r: int) -> float | None | bool:
        for t in sizes:
            if not problems(r, t):
                return norm(t)
        return False

    if rows == "auto":
        for r in range(1, n + 1):
            t = first_fit(r)
            if t is not False:
                return PanelLayout(r, t)
        best = min(range(1, n + 1), key=lambda r: (len(problems(r, sizes[-1])), r))
        return PanelLayout(best, norm(sizes[-1]), tuple(problems(best, sizes[-1])), None)
    if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= 64:
        raise ValueError(f"rows must be 'auto' or a whole number from 1 to 64, got {rows!r}.")
    r = min(rows, n)
    if title_pt is not None:
        t = norm(title_pt)
        found = problems(r, t)
    else:
        t = first_fit(r)
        if t is not False:
            return PanelLayout(r, t)
        t = norm(sizes[-1])
        found = problems(r, t)
    if not found:
        return PanelLayout(r, t)
    proposal = next((k for k in range(r + 1, n + 1) if first_fit(k) is not False), None)
    return PanelLayout(r, t, tuple(found), proposal)


def _letter(i: int) -> str:
    letters = string.ascii_lowercase
    return letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26]


def _has_tick_labels(fig: go.Figure, axis: str) -> bool:
    for k in fig.layout:
        if k.startswith(f"{axis}axis"):
            ax = fig.layout[k]
            if ax.showticklabels is not False and ax.visible is not False:
                return True
    return False


def add_footnote(fig: go.Figure, notes: "list[str]", preset) -> go.Figure:
    """A copy of ``fig`` (already :func:`paper_style`-d) with ``notes`` under the panels, in the preset's tick size,
    wrapped to the figure's width; the figure grows by the footnote's height."""
    import textwrap

    from .presets import get_preset

    if not notes:
        return fig
    p = get_preset(preset)
    out = go.Figure(fig)
    size = p.px(p.tick_pt)
    width = float(out.layout.width or p.width_px)
    room = width - 8  # a line starts at the page's left edge
    chars = max(20, int(width / (size * 0.52)))
    lines = []
    for n in notes:  # wrapped by the fonts' measured widths (a character count misjudges wide glyphs: "—", "×", "∂")
        for ln in textwrap.wrap(f"Note: {n}", chars):
            words, cur = ln.split(" "), ""
            for w in words:
                trial = f"{cur} {w}" if cur else w
                if cur and text_width(trial, size, p.font_family) > room:
                    lines.append(cur)
                    cur = w
                else:
                    cur = trial
            lines.append(cur)
    height = _label_size("<br>".join(html.escape(ln) for ln in lines), size, p.font_family)[1] + 6  # plotly's line pitch
    m = out.layout.margin
    bottom = float(m.b or 0)
    out.update_layout(height=float(out.layout.height or 0) + height, margin=dict(b=bottom + height))
    out.add_annotation(text="<br>".join(lines), x=0, y=0, xref="paper", yref="paper", xanchor="left", yanchor="top",
                       yshift=-bottom, align="left", showarrow=False, font=dict(size=size, family=p.font_family, color="black"))
    return out
