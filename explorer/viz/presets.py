"""Paper presets: physical figure sizes and font sizes of common venues.

Widths are the column / text widths of the venues' LaTeX templates (rounded down a little so
a figure included at ``width=\\linewidth`` is not rescaled).  Plotly measures in CSS pixels
(96 per inch) and kaleido's PDF pages use 72 points per inch, so a preset turns inches into
pixels with :data:`PX_PER_IN` and points into pixels with :data:`PX_PER_PT`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

PX_PER_IN = 96.0
PT_PER_IN = 72.0
PX_PER_PT = PX_PER_IN / PT_PER_IN

#: TrueType faces (embedded by Chromium as CID TrueType; OpenType-CFF faces such as Latin
#: Modern come out as Type 3 fonts, which several publishers reject).  Liberation Serif has
#: the metrics of Times, Liberation Sans those of Arial/Helvetica.
SERIF = "Liberation Serif, DejaVu Serif, serif"
SANS = "Liberation Sans, DejaVu Sans, sans-serif"


@dataclass(frozen=True)
class Preset:
    """Size and typography of one exported figure.

    Attributes:
        name: registry key.
        width_in: figure width in inches (exact page width of the PDF).
        font_pt: body font size (axis titles, panel titles, colour-bar labels) in points.
        tick_pt: tick-label size in points.
        letter_pt: panel-letter size in points.
        font_family: CSS font list (first installed face wins).
        dpi: PNG resolution.
        description: where the numbers come from.
    """

    name: str
    width_in: float
    font_pt: float = 8.0
    tick_pt: float = 7.0
    letter_pt: float = 9.0
    font_family: str = SERIF
    dpi: int = 300
    description: str = ""

    @property
    def width_px(self) -> float:
        return self.width_in * PX_PER_IN

    @property
    def min_font_pt(self) -> float:
        """Smallest size (points) a panel title may shrink to so that a row of panels fits: the preset's tick size,
        the smallest text it already sets (never above ``font_pt``).  Not stored: it follows from the fields, so
        sidecars written before it existed keep their bytes."""
        return min(self.tick_pt, self.font_pt)

    def px(self, pt: float) -> float:
        """Font size in points → plotly pixels."""
        return pt * PX_PER_PT

    def with_(self, **changes) -> "Preset":
        """A copy with some fields changed (e.g. ``dpi=600``)."""
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("single-column", 3.3, description="one column of a two-column paper (~8.4 cm): CVPR/ICCV, ICML, IEEE, ACM"),
        Preset("double-column", 6.9, description="full text width of a two-column paper (~17.5 cm): CVPR/ICCV 6.875 in, ICML 6.75 in"),
        Preset("neurips", 5.5, font_pt=9.0, tick_pt=8.0, letter_pt=10.0, description="NeurIPS / ICLR single-column text width (5.5 in)"),
        Preset("ieee-single", 3.5, description="IEEE transactions column (3.5 in)"),
        Preset("ieee-double", 7.16, description="IEEE transactions text width (7.16 in)"),
        Preset("nature-single", 89 / 25.4, font_pt=7.0, tick_pt=6.0, letter_pt=8.0, font_family=SANS,
               description="Nature single column, 89 mm, sans-serif 5-7 pt"),
        Preset("nature-double", 183 / 25.4, font_pt=7.0, tick_pt=6.0, letter_pt=8.0, font_family=SANS,
               description="Nature double column, 183 mm"),
        Preset("screen", 12.0, font_pt=10.0, tick_pt=9.0, letter_pt=11.0, font_family=SANS, dpi=150,
               description="slides and web pages (12 in, the widest a sidecar records)"),
    ]
}


def get_preset(preset: "str | Preset", **changes) -> Preset:
    """A preset by name (or pass one through), optionally with fields changed."""
    if isinstance(preset, Preset):
        p = preset
    else:
        try:
            p = PRESETS[str(preset)]
        except KeyError:
            raise ValueError(f"Unknown preset {preset!r}. Choose one of: {', '.join(PRESETS)}.") from None
    p = p.with_(**changes) if changes else p
    if not (0.5 <= p.width_in <= 40):
        raise ValueError(f"Figure width {p.width_in} in is outside 0.5-40 in.")
    if not 50 <= p.dpi <= 1200:
        raise ValueError(f"dpi {p.dpi} is outside 50-1200.")
    return p
