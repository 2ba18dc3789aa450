"""What the apps share for talking to the user: the error box, the status mixin, the callback guard."""

from __future__ import annotations

import functools
import html
import traceback

_ERROR_STYLE = "color:var(--jp-error-color0,#8b0000);background:var(--jp-error-color3,#fdecea);border:1px solid var(--jp-error-color2,#f5c2c0);padding:6px 10px;border-radius:4px"


def error_html(message: str, extra_html: str = "") -> str:
    """A red box with ``message`` (escaped) followed by ``extra_html`` (already HTML)."""
    return f'<div style="{_ERROR_STYLE}"><b>⚠</b> {html.escape(message)}{extra_html}</div>'


def guarded(user_errors: tuple):
    """Decorator for widget callbacks: exceptions go to ``self._error`` instead of the kernel.

    Exceptions in ``user_errors`` carry a message meant for the user (shown as it is); anything
    else is shown with its type and the traceback in the app's collapsible details area.
    """

    def deco(method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except user_errors as e:
                self._error(str(e))
            except Exception as e:  # noqa: BLE001 - the kernel must survive anything
                self._error(f"{type(e).__name__}: {e}", details=traceback.format_exc())
            return None

        return wrapper

    return deco


class StatusMixin:
    """``status`` (``W.HTML``) and ``details`` (``W.Output``) handling shared by the apps."""

    _has_details = False

    def _error(self, message: str, details: str | None = None):
        self.status.value = error_html(message)
        self._clear_details()
        if details:
            self._has_details = True
            with self.details:
                print(details)

    def _clear_details(self):
        if self._has_details:  # clear_output() outside a kernel prints escape codes: only when needed
            self.details.clear_output()
            self._has_details = False
