"""What every app shares: the header row, one re-entrancy guard, the progress state while it starts, figure
replacement and file stems for upload names.

An app subclasses :class:`AppBase`, builds its header with :meth:`AppBase.header` (model box, device, dtype, load
button, sample, upload) and places :attr:`AppBase.status_area` (progress bar, status line, details) where its status
goes.  Then it calls :meth:`AppBase.start`: in a notebook the app is displayed at once, with a progress bar and
"loading mini-mae…", and only then loads the model and computes the first figure; errors replace the progress with
their message.

    with self.quiet():                 # a programmatic change: observers registered with on_change() do not fire
        self.strategy_tb.value = "manual"
    with self.working("first forward…"):   # progress bar + status text while the block runs
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
from pathlib import Path
from typing import Callable, Iterable

import ipywidgets as W

from ..models import ModelLoadError, available_devices
from .figures import AppFigure
from .messages import StatusMixin, error_html

_STATUS_STYLE = "font-size:12px;color:var(--jp-ui-font-color1,#444);line-height:1.5"
#: Rows of controls wrap onto the next line in a narrow output area instead of being cut off.
ROW = dict(flex_flow="row wrap", align_items="center")
#: What the A/B box takes for "model A with its layers re-drawn, seeded".
RANDOMISED = "randomised copy"
#: Seconds a slider must rest before work that would delay the panels of a slider being dragged (a curve's marker,
#: hover values) is done.
REST_DELAY_S = 0.15


def upload_name(value) -> str:
    """The file name of a ``FileUpload`` value (ipywidgets 8: a tuple of dicts with ``name``), or ``"upload"``."""
    try:
        first = value[0] if isinstance(value, (tuple, list)) else next(iter(value.values()))
        return str(first.get("name") or "upload")
    except Exception:  # noqa: BLE001 - a name for a message only
        return "upload"


def file_stem(name: str, *, default: str = "image", length: int = 40) -> str:
    """A file-name stem from an upload or input name: extension dropped, anything but letters, digits, ``-`` and ``_``
    replaced by ``-``, at most ``length`` characters (``default`` when nothing is left).

    >>> file_stem("my cat (1).JPG")
    'my-cat--1-'
    """
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(name).rsplit(".", 1)[0])[:length]
    return stem or default


def _kernel_shell():
    """The IPython shell when running in a kernel with a front end (Jupyter, VS Code…), else ``None``."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return None
    shell = get_ipython()
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


def _display(bundle: dict) -> None:
    from IPython.display import display

    display(bundle, raw=True)


def widen_buttons(root: W.Widget) -> int:
    """Give every button and upload button under ``root`` the width of its label (ipywidgets' default is a fixed
    148 px that cuts longer labels: "Deletion / inse…"); explicit widths are kept.  Returns how many were widened."""
    n = 0
    stack = [root]
    while stack:
        w = stack.pop()
        if isinstance(w, (W.Button, W.FileUpload)) and not w.layout.width:
            w.layout.width = "auto"
            n += 1
        stack.extend(c for c in getattr(w, "children", ()) if isinstance(c, W.Widget))
    return n


class FrameControls:
    """A Frame slider with a Play button linked to it, for apps that show one frame of a clip at a time.

    Frames are numbered from 1 on screen, as the figure titles number them ("frame 4 of 8"); :attr:`frame_index`
    is the same frame counted from 0, as results, recipes and sidecars count it.
    """

    def frame_controls(self, interval: int) -> None:
        """Build :attr:`frame` (``IntSlider``) and :attr:`play` (``Play``, ``interval`` ms per frame), linked in the page."""
        self.frame = W.IntSlider(value=1, min=1, max=1, description="Frame", continuous_update=True)
        self.play = W.Play(value=1, min=1, max=1, interval=interval, description="Play")
        W.jslink((self.play, "value"), (self.frame, "value"))

    def set_frame_count(self, n: int) -> None:
        """Let the slider and Play reach frame ``n`` (the clip's length)."""
        self.frame.max = self.play.max = int(n)

    @property
    def frame_index(self) -> int:
        """The frame on screen, counted from 0."""
        return int(self.frame.value) - 1


class AppBase(StatusMixin, W.VBox):
    """Base of the explorer apps (a ``VBox``).

    Class attributes:
        display_on_start: in a notebook, show the app as soon as it is constructed (before the model loads), so the cell
            shows a progress bar instead of nothing; the cell's own ``app`` line then shows nothing more.  Set it to
            ``False`` to place apps in a layout of your own.

    Attributes (after :meth:`header`):
        model_box, device_dd, dtype_dd (``None`` without dtypes), load_btn, sample_dd, upload (``None`` without one),
        progress, status, details, status_area.
        started: ``True`` once :meth:`start` has run (the first model, input and figure).
    """

    display_on_start = True
    started = False
    dtype_dd = None
    upload = None
    upload_label = None
    _preloaded = None
    #: export recipes whose sidecars :meth:`reopen` accepts (an app that exports nothing reopens nothing)
    recipes: tuple = ()
    _uploading = None
    _upload_failed = False
    _quiet_depth = 0
    _work_depth = 0
    _rest_timer = None
    _shown_in_cell = None

    # ------------------------------------------------------------------ header
    def header(self, *, model: str, models: Iterable[str], device: str = "auto", dtype: str | None = None,
               dtypes: Iterable[str] | None = None, placeholder: str = "", model_width: str = "380px",
               samples: Iterable = (), sample_label: str = "Sample", sample_value=None, sample_width: str = "420px",
               upload_accept: str | None = "image/*", upload_label: str = "Upload image",
               model_extra: Iterable[W.Widget] = (), sample_extra: Iterable[W.Widget] = ()) -> list[W.Widget]:
        """Create the header widgets; returns the two header rows (model row, sample row).

        Args:
            models: names offered in the model box (any other name, hub id or folder can be typed).
            dtypes: offer a dtype dropdown (``None``: no dropdown, the model loads in float32).
            samples: the sample dropdown's options (``(label, value)`` pairs or values).
            upload_accept: file types of the upload button (``None``: no upload button).
            model_extra / sample_extra: more widgets at the end of each row.
        """
        style = {"description_width": "initial"}
        if not isinstance(model, (str, os.PathLike)) and hasattr(model, "model_id"):  # an adapter, already loaded
            self._preloaded, model = model, model.model_id
        self.model_box = W.Combobox(value=str(model), options=list(dict.fromkeys(models)), description="Model",
                                    ensure_option=False, placeholder=placeholder, style=style,
                                    layout=W.Layout(width=model_width))
        devs = ["auto"] + available_devices()
        self.device_dd = W.Dropdown(options=devs, value=device if device in devs else "auto", description="Device",
                                    layout=W.Layout(width="160px"))
        if dtypes is not None:
            dtypes = list(dict.fromkeys(dtypes))
            self.dtype_dd = W.Dropdown(options=dtypes, value=dtype if dtype in dtypes else dtypes[0], description="dtype",
                                       layout=W.Layout(width="170px"))
        self.load_btn = W.Button(description="Load model", icon="download", button_style="primary")
        self.sample_dd = W.Dropdown(options=list(samples), value=sample_value, description=sample_label, style=style,
                                    layout=W.Layout(width=sample_width))
        if upload_accept is not None:
            self.upload = W.FileUpload(accept=upload_accept, multiple=False, description=upload_label)
            self.upload_label = W.HTML(layout=W.Layout(max_width="260px", overflow="hidden"))
        self.progress = W.IntProgress(value=0, min=0, max=1, bar_style="info", description="",
                                      layout=W.Layout(width="260px", display="none"))
        self.status = W.HTML()
        self.details = W.Output(layout=W.Layout(max_height="160px", overflow="auto"))
        self.status_area = W.VBox([self.progress, self.status, self.details])
        return [W.HBox([self.model_box, self.device_dd, *([self.dtype_dd] if self.dtype_dd else []), self.load_btn,
                        *model_extra], layout=W.Layout(**ROW)),
                W.HBox([self.sample_dd, *([self.upload, self.upload_label] if self.upload else []), *sample_extra],
                       layout=W.Layout(**ROW))]

    def model_name(self) -> str:
        """The name typed in the model box (stripped); refused when empty."""
        name = self.model_box.value.strip()
        if not name:
            raise ModelLoadError("Type a model name, a Hugging Face id or a folder first.")
        return name

    def load_selected(self, loader: Callable, **kwargs):
        """``loader(name, device=..., dtype=...)`` for the model box, device and dtype on screen, with "loading <name>…"
        and the progress bar up while it runs."""
        name = self.model_name()
        if self._preloaded is not None and name == self._preloaded.model_id:  # handed over loaded (from a sidecar)
            return self._preloaded
        kw = dict(device=self.device_dd.value)
        if self.dtype_dd is not None:
            kw["dtype"] = self.dtype_dd.value
        with self.working(f"loading {name}…"):
            return loader(name, **kw, **kwargs)

    def show_first(self, source, use: Callable) -> None:
        """Show ``source`` at start: a sample listed in the sample dropdown by selecting it (its observer reads it),
        anything else (or the sample already selected) through ``use(source)``."""
        listed = isinstance(source, str) and any(
            (o[1] if isinstance(o, tuple) else o) == source for o in self.sample_dd.options)
        if listed and source != self.sample_dd.value:
            self.sample_dd.value = source
        else:
            use(source)

    # ------------------------------------------------------------------ sidecars
    def reopen(self, path, *, device: str | None = None, allow_download: bool = False):
        """Read the sidecar of a figure this app exported (``.json``, or the exported PNG / PDF / SVG) and load its
        model and inputs, checked against the recorded hashes (:func:`explorer.export.reopen`).

        Raises:
            ValueError: the figure was exported by another app (the message names the right one).
        """
        from ..export import reopen

        r = reopen(path, device=device, allow_download=allow_download)
        if r.recipe not in self.recipes:
            raise ValueError(f"{Path(path).name} was exported with the {r.recipe!r} recipe; {type(self).__name__} "
                             f"reopens {', '.join(repr(x) for x in self.recipes) or 'no'} figures.")
        return r

    def hand_over_model(self, adapter) -> None:
        """Show ``adapter`` (already loaded) as the model in the model box, without loading it again."""
        self._preloaded = adapter
        with self.quiet():
            self.model_box.value = adapter.model_id

    # ------------------------------------------------------------------ uploads
    def take_upload(self, value, use: Callable) -> None:
        """Show the uploaded file ``value`` (a ``FileUpload`` value) through ``use(value)``.

        Its name appears beside the upload button.  When it loads, the sample dropdown goes blank (it no longer names
        what is on screen); when it is refused, the message names the file and says what is still on screen.
        """
        if not value:
            return
        name = upload_name(value)
        self._uploading, self._upload_failed = name, False
        self._before_upload = self.status.value
        try:
            use(value)
        finally:
            self._uploading = None
        if self.upload_label is not None:
            shown = html.escape(name)
            self.upload_label.value = (f"<span style='font-size:12px' title='{shown}'>{shown}</span>" if not self._upload_failed
                                       else f"<span style='font-size:12px;text-decoration:line-through' title='not loaded'>{shown}</span>")
        if not self._upload_failed:
            with self.quiet():
                self.sample_dd.value = None

    # ------------------------------------------------------------------ status
    def _info(self, text: str) -> None:
        """Show ``text`` (HTML) in the status line and clear the details of an earlier error."""
        self._clear_details()
        self.status.value = f"<div style='{_STATUS_STYLE}'>{text}</div>"

    def _error(self, message: str, details: str | None = None):
        self.progress.layout.display = "none"
        if self._uploading is None:
            super()._error(message, details)
            return
        # A refused upload: name the file, and keep saying what is still on screen.
        self._upload_failed = True
        super()._error(f"{self._uploading} was not loaded: {message}", details)
        before = getattr(self, "_before_upload", "")
        if before and "⚠" not in before:
            self.status.value = error_html(f"{self._uploading} was not loaded: {message}",
                                           f"<div style='margin-top:4px'>Still showing:</div>{before}")

    # ------------------------------------------------------------------ re-entrancy guard
    @contextlib.contextmanager
    def quiet(self):
        """Widget values set inside this block are programmatic: observers registered with :meth:`on_change` skip them
        (no recompute).  Nests."""
        self._quiet_depth += 1
        try:
            yield
        finally:
            self._quiet_depth -= 1

    @property
    def is_quiet(self) -> bool:
        """Inside a :meth:`quiet` block."""
        return self._quiet_depth > 0

    def on_change(self, widgets: "W.Widget | Iterable[W.Widget]", callback: Callable, *, names: str = "value") -> None:
        """Observe ``names`` of ``widgets``: ``callback(change)``, except for changes made inside :meth:`quiet`."""
        for w in widgets if isinstance(widgets, (list, tuple)) else [widgets]:
            w.observe(lambda change: None if self.is_quiet else callback(change), names=names)

    # ------------------------------------------------------------------ A/B comparison
    def compare_controls(self, models: Iterable[str], *, tooltip: str) -> None:
        """The A/B widgets, wired to the app's ``compare(model_b)``: :attr:`compare_box` (``RANDOMISED`` and
        ``models``), :attr:`compare_btn`, :attr:`compare_off` (stops comparing) and :attr:`compare_fig`."""
        self.compare_box = W.Combobox(value="", options=[RANDOMISED, *models], ensure_option=False,
                                      placeholder="B: a model, hub id, folder or 'randomised copy'",
                                      description="Compare with", style={"description_width": "initial"},
                                      layout=W.Layout(width="420px"))
        self.compare_btn = W.Button(description="Compare A/B", icon="columns", tooltip=tooltip)
        self.compare_off = W.Button(description="Stop comparing", icon="times", disabled=True)
        self.compare_fig = AppFigure()
        self.compare_btn.on_click(lambda _b: self.compare(self.compare_box.value))
        self.compare_off.on_click(lambda _b: self.compare(None))

    def pick_model_b(self, model_b, *, load: Callable[[str], object], randomise: Callable[[], tuple], redrawing: str):
        """``(adapter, name)`` of model B from what ``compare`` was given: ``RANDOMISED`` → ``randomise()`` (which
        returns both; ``redrawing`` is shown meanwhile), a name, hub id or folder → ``load(name)``, or an adapter.

        Raises:
            ValueError: anything else.
        """
        if isinstance(model_b, str) and model_b.strip() == RANDOMISED:
            with self.working(redrawing):
                return randomise()
        if isinstance(model_b, (str, os.PathLike)):
            with self.working(f"loading {str(model_b).strip()}…"):
                b = load(str(model_b).strip())
            return b, b.model_id
        if not hasattr(model_b, "model_id"):
            raise ValueError(f"Compare with a model name, hub id, folder, {RANDOMISED!r} or an adapter "
                             f"(not a {type(model_b).__name__}).")
        return model_b, model_b.model_id

    def when_resting(self, fn: Callable[[], None], *, delay: float = REST_DELAY_S) -> None:
        """Run ``fn()`` once the controls have rested ``delay`` seconds (a newer call replaces a waiting one).
        Without a running event loop (scripts, tests) it runs at once."""
        if self._rest_timer is not None:
            self._rest_timer.cancel()
            self._rest_timer = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            fn()
            return

        def run():
            self._rest_timer = None
            fn()

        self._rest_timer = loop.call_later(delay, run)

    # ------------------------------------------------------------------ progress
    @property
    def loading(self) -> bool:
        """The progress bar is showing (something slow is running)."""
        return self.progress.layout.display != "none"

    @contextlib.contextmanager
    def working(self, text: str):
        """Progress bar and ``text`` (plain text) in the status line while the block runs.

        The bar goes when the outermost block ends; the status line goes back to what it showed before unless the block
        showed something else (a result, or an error: an error is never hidden by this)."""
        shown = f"<div style='{_STATUS_STYLE}'><i class='fa fa-spinner fa-spin'></i> {html.escape(text)}</div>"
        before = self.status.value
        self._work_depth += 1
        self.progress.value = min(self.progress.value + 1, self.progress.max)
        self.progress.layout.display = ""
        self.status.value = shown
        try:
            yield
        finally:
            self._work_depth -= 1
            if self.status.value == shown:
                self.status.value = before
            if self._work_depth == 0:
                self.progress.layout.display = "none"
                self.progress.value = 0
                self.progress.max = 1

    def computing(self, what: str = "running the model"):
        """:meth:`working` for a forward pass: "first forward…" while the app starts, else ``what…``."""
        return self.working(f"{what}…" if self.started else "first forward…")

    def start(self, run: Callable[[], None], *, steps: int = 3) -> None:
        """Show the app (in a notebook, before anything slow), then ``run()`` (load the model, the first input, the
        first figure) with the progress bar up; ``steps``: how many :meth:`working` stages ``run`` goes through."""
        widen_buttons(self)
        self._display_first()
        self.progress.max = steps + 1
        try:
            with self.working("starting…"):
                run()
        finally:
            self.started = True

    # ------------------------------------------------------------------ display
    def _display_first(self) -> None:
        shell = _kernel_shell() if self.display_on_start else None
        if shell is None:
            return
        bundle = self._repr_mimebundle_()
        if bundle:
            _display(bundle)
            self._shown_in_cell = shell.execution_count

    def _ipython_display_(self, **kwargs):
        shell = _kernel_shell()
        if shell is not None and self._shown_in_cell is not None and self._shown_in_cell == shell.execution_count:
            self._shown_in_cell = None  # the cell's own `app` line: the app is on screen already, above
            return
        _display(self._repr_mimebundle_(**kwargs))
