"""HTML snippets shared by the apps' status lines."""

from __future__ import annotations

import html

_ERROR_STYLE = "color:#8b0000;background:#fdecea;border:1px solid #f5c2c0;padding:6px 10px;border-radius:4px"


def error_html(message: str, extra_html: str = "") -> str:
    """A red box with ``message`` (escaped) followed by ``extra_html`` (already HTML)."""
    return f'<div style="{_ERROR_STYLE}"><b>⚠</b> {html.escape(message)}{extra_html}</div>'
