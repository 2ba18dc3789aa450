"""Plotly figure widgets that fit the notebook: :class:`AppFigure`, :func:`replace_figure` and :func:`hide_figure`.

A figure built by :mod:`explorer.viz` has a natural width (a 5-panel reconstruction row is 1250 px).  Shown as it is,
it is clipped when JupyterLab's side panel is open and scrolls sideways in a narrow window.  An :class:`AppFigure` is
shown inside :attr:`AppFigure.box`, whose width follows the output area and never exceeds the figure's natural width.
The figure is autosized to the box (its height kept) and fits again whenever the box changes size (a side panel opened
or closed, the window resized): plotly's own widget front end is wrapped so that a ``ResizeObserver`` re-fits the plot
and reports the width to Python (:attr:`AppFigure.fit_width`), which scales the figure's titles and labels to it.

The box stays hidden until the first figure is shown, so an app never shows an empty placeholder chart, and
:func:`hide_figure` hides it again (e.g. a ratio curve that does not apply to a hand-made mask).
"""

from __future__ import annotations

import copy
import functools
import pathlib
import re

import ipywidgets as W
import plotly
import plotly.graph_objects as go
import traitlets

from ..viz.fit import MODEBAR_PX, scaled_text_sizes, text_sizes, wrapped_titles
from ..viz.theme import dark_updates, light_state

#: The last ``export{…}`` statement of plotly's widget bundle (its anywidget entry point is the default export).
_EXPORT = re.compile(r"export\s*\{([^{}]*)\}\s*;?(?=(?:\s|/\*[\s\S]*?\*/)*$)")

#: Our default export: plotly's widget, whose views re-fit the plot when their element changes size and report the width.
_WRAP_JS = r"""
const __explorerFit = () => {
  const widget = __plotlyWidget();
  return {
    initialize: widget.initialize,
    render(ctx) {
      const el = ctx.el, model = ctx.model;
      let cleanup = null, last = 0, timer = null, late = null;
      const observer = new ResizeObserver(entries => {
        const width = Math.round(entries[entries.length - 1].contentRect.width);
        if (!width || width === last) return;
        last = width;
        // autosized: forget any width plotly guessed while the output was off screen, then fit the element
        if (el.layout) delete el.layout.width;
        if (typeof el._responsiveChartHandler === 'function') el._responsiveChartHandler();
        clearTimeout(timer);
        timer = setTimeout(() => { model.set('fit_width', width); model.save_changes(); }, 120);
      });
      // Follow JupyterLab's (and Voila's) theme: the body says whether the theme is light.
      const report = () => {
        const dark = !!(document.body && document.body.dataset.jpThemeLight === 'false');
        if (model.get('dark') !== dark) { model.set('dark', dark); model.save_changes(); }
      };
      const theme = new MutationObserver(report);
      if (document.body) theme.observe(document.body, {attributes: true, attributeFilter: ['data-jp-theme-light']});
      report();
      let asked = false, note = null, checker = null;
      const start = () => {
        if (cleanup !== null) return;
        cleanup = widget.render(ctx) || (() => {});
        observer.observe(el);
        schedule();
      };
      // The kernel answers a view that asked for the figure: draw it (again, for a view that came out empty).
      const restored = msg => {
        if (!msg || msg.type !== 'explorer-restored' || !asked) return;
        asked = false;
        if (note) { note.remove(); note = null; }
        if (cleanup !== null) { cleanup(); cleanup = null; }
        start();
      };
      model.on('msg:custom', restored);
      const ask = () => { asked = true; model.send({type: 'explorer-restore'}); };
      // A view that shows an empty plot while the kernel holds a figure (its traces were lost between the view being
      // created and the figure arriving) asks for the figure and redraws, instead of staying empty.
      const check = () => {
        checker = null;
        const want = model.get('n_traces') || 0;
        if (cleanup === null || asked || !want || (el.data || []).length) return;
        console.warn(`explorer: a figure view is empty but the kernel shows ${want} traces; asking the kernel for it`);
        ask();
      };
      const schedule = () => { clearTimeout(checker); checker = setTimeout(check, 1000); };
      model.on('change:n_shown', schedule);
      if (model.get('has_figure') && (model.get('stale') || !(model.get('_widget_data') || []).length)) {
        // A page (re)loaded after the figure changed in place (a slider move): the saved state is older than the
        // figure on screen.  Ask the kernel for it, then draw; while it is busy, say so.
        ask();
        late = setTimeout(() => {  // the kernel is busy or gone: say so, and keep waiting for its answer
          if (cleanup !== null) return;
          note = document.createElement('div');
          note.className = 'explorer-restore-note';
          note.textContent = 'Waiting for the kernel to redraw this figure after the page reloaded; ' +
                             'if it does not appear, re-run the cell.';
          note.style.cssText = 'padding:6px 10px;color:var(--jp-warn-color0,#8a5300);font-size:12px';
          el.prepend(note);
        }, 8000);
      } else {
        start();
      }
      return () => {
        observer.disconnect(); theme.disconnect(); clearTimeout(timer); clearTimeout(late); clearTimeout(checker);
        model.off('msg:custom', restored); model.off('change:n_shown', schedule);
        if (typeof cleanup === 'function') cleanup();
      };
    },
  };
};
"""


#: Two costs plotly's widget view adds to every update from Python, which our views remove:
#:
#: * it marks the update ``_doNotReportToPy`` (so that plotly.js's event for it is not echoed back to Python), as a
#:   key of the data it hands plotly.js; plotly.js takes the unknown key for an edit that needs every trace recomputed,
#:   so swapping five image sources costs a full redraw (15-35 ms on a small CPU).  Our views make the mark
#:   non-enumerable (plotly.js does not see it; the view's own check still does) and skip the one echo event that
#:   plotly.js then emits for the update;
#: * after the update it computes the figure's full data and layout and sends their defaults to Python
#:   (``_sendTraceDeltas`` / ``_sendLayoutDelta``: deep merges of the whole figure) before the browser may paint.  Our
#:   views send them ~0.1 s later (the newest edit's only, when several updates come first), after the new panels are
#:   painted.
_VIEW_PATCH_JS = r"""
const __explorerPatchView = View => {
  const P = View && View.prototype;
  if (!P || P.__explorerPatched) return;
  P.__explorerPatched = true;
  const hide = d => {
    if (d && typeof d === 'object' && !Object.prototype.hasOwnProperty.call(d, '_doNotReportToPy'))
      Object.defineProperty(d, '_doNotReportToPy', {value: false, writable: true, enumerable: false, configurable: true});
  };
  const quiet = [['do_update', '_py2js_update', ['style_data', 'layout_data'], 'handle_plotly_update'],
                 ['do_relayout', '_py2js_relayout', ['relayout_data'], 'handle_plotly_relayout'],
                 ['do_restyle', '_py2js_restyle', ['restyle_data'], 'handle_plotly_restyle']];
  for (const [apply, trait, parts, handle] of quiet) {
    const run = P[apply], echo = P[handle];
    if (typeof run !== 'function' || typeof echo !== 'function') continue;
    const slot = '__explorerMute_' + handle;
    P[apply] = function () {
      // the view reads the message through its model's get(), which deserialises a new copy on every call: mark the
      // copy it is handed
      const view = this, model = this.model;
      if (!model || typeof model.get !== 'function') return run.apply(this, arguments);
      const own = Object.prototype.hasOwnProperty.call(model, 'get'), get = model.get;
      model.get = function (name) {
        const msg = get.apply(this, arguments);
        if (name === trait && msg && parts.every(k => msg[k] && typeof msg[k] === 'object')) {
          parts.forEach(k => hide(msg[k]));
          if (trait !== '_py2js_relayout' || msg.source_view_id !== view.viewID) {
            // plotly.js will emit one event for this update: it is ours, not the user's
            const queue = view[slot] || (view[slot] = []), token = {};
            queue.push(token);
            setTimeout(() => { const i = queue.indexOf(token); if (i >= 0) queue.splice(i, 1); }, 2000);  // none came
          }
        }
        return msg;
      };
      try {
        return run.apply(this, arguments);
      } finally {
        if (own) model.get = get; else delete model.get;
      }
    };
    P[handle] = function () {
      const queue = this[slot];
      if (queue && queue.length) { queue.shift(); return; }
      return echo.apply(this, arguments);
    };
  }
  for (const name of ['_sendTraceDeltas', '_sendLayoutDelta']) {
    const send = P[name];
    if (typeof send !== 'function') continue;
    const slot = '__explorerNext' + name;
    P[name] = function (editId) {
      const waiting = this[slot] !== undefined;
      this[slot] = editId;  // a later update replaces the edit id: one send carries the newest
      if (waiting) return;
      setTimeout(() => {
        const id = this[slot];
        this[slot] = undefined;
        try { send.call(this, id); } catch (e) { console.warn('explorer: a figure delta was not sent', e); }
      }, 100);
    };
  }
};
"""


class FrontEndError(RuntimeError):
    """Plotly's widget bundle does not have the shape :class:`AppFigure` wraps (a plotly upgrade changed it)."""


@functools.lru_cache(maxsize=1)
def fitted_bundle() -> str:
    """Plotly's widget front end (its ``widgetbundle.js``) with its default export wrapped by the resize observer.

    Raises:
        FrontEndError: the bundle has no final ``export{… as default}`` (a plotly release changed its layout).
    """
    path = pathlib.Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"
    text = path.read_text(encoding="utf-8")
    match = None
    for match in _EXPORT.finditer(text):
        pass
    names = [n.strip() for n in match.group(1).split(",")] if match else []
    default = [n.split(" as ")[0].strip() for n in names if n.endswith(" as default")]
    if not default:
        raise FrontEndError(f"plotly {plotly.__version__}: no default export at the end of {path}; "
                            "the figures cannot fit their output area.")
    rest = [n for n in names if not n.endswith(" as default")]
    view = [n.split(" as ")[0].strip() for n in rest if n.endswith(" as FigureView")]
    defer = f"{_VIEW_PATCH_JS}\n__explorerPatchView({view[0]});\n" if view else ""
    export = (f"const __plotlyWidget = {default[0]};\n{defer}{_WRAP_JS}\n"
              f"export{{{', '.join(rest + ['__explorerFit as default'])}}};")
    return text[:match.start()] + export + text[match.end():]


class AppFigure(go.FigureWidget):
    """A ``plotly.graph_objects.FigureWidget`` that fits its output area.

    Place :attr:`box` (not the figure) in an app's layout and show figures with :func:`replace_figure`.

    Attributes:
        box: the ``ipywidgets.VBox`` holding the figure: the output area's width, at most the figure's natural width,
            hidden until a figure is shown.
        row: the figure sits in a :func:`figure_row` (side by side with others) rather than in a column.
        natural_width: the width (px) the figure on screen was built for, or ``None``.
        fit_width: the width (px) the browser gives the figure (0 until it reports one; synced from the page).
    """

    fit_width = traitlets.Int(0).tag(sync=True)
    #: the page shows a dark theme (synced from the page): figures are drawn with the dark look
    dark = traitlets.Bool(False).tag(sync=True)
    #: a figure has been shown (synced: a reloaded page asks the kernel for it instead of drawing an empty plot)
    has_figure = traitlets.Bool(False).tag(sync=True)
    #: the figure changed in place since its state was saved for new views (kept in the kernel's state only: a page
    #: that loads later, such as a reload or Voila, asks for the figure then)
    stale = traitlets.Bool(False).tag(sync=True)
    #: how many traces the figure on screen has, and how many figures have been shown (synced: a view that stays
    #: empty although the kernel shows a figure asks for it again)
    n_traces = traitlets.Int(0).tag(sync=True)
    n_shown = traitlets.Int(0).tag(sync=True)
    natural_width = None
    row = False
    _box = None
    _base_sizes = None
    _light = None

    def __init__(self, *args, row: bool = False, **kwargs):
        type(self)._esm = fitted_bundle()
        super().__init__(*args, **kwargs)
        self._config = {**(self._config or {}), "responsive": True}
        self.row = bool(row)
        # In a column the box spans the output area; in a row (figure_row) it takes its natural width and may shrink.
        self._box = W.VBox([self], layout=W.Layout(width="auto" if row else "100%", min_width="0", display="none"))
        self.observe(lambda _change: self.fit_text(), names="fit_width")
        self.observe(lambda _change: self.apply_theme(), names="dark")
        self.on_msg(self._on_page_message)

    def _on_page_message(self, _widget, content, _buffers) -> None:
        """A view drawn after the page reloaded asks for the figure: hand it plotly's full state, then say so."""
        if isinstance(content, dict) and content.get("type") == "explorer-restore":
            self.restore_state()
            self.send({"type": "explorer-restored"})

    def restore_state(self) -> None:
        """Put the figure on screen into the state a new view draws from (plotly keeps the one it started with)."""
        self._widget_layout = copy.deepcopy(self._layout_obj._props)
        self._widget_data = copy.deepcopy(self._data)
        self._set_quietly(stale=False)

    def save_state(self) -> None:
        """Keep the figure on screen as the state a page that loads later draws from (a reload, Voila), without
        sending it to the views already open (they have it)."""
        self._set_quietly(_widget_layout=copy.deepcopy(self._layout_obj._props), _widget_data=copy.deepcopy(self._data),
                          stale=False)

    def _set_quietly(self, **values) -> None:
        """Set synced traits in the kernel's state only: the open views are not sent them (they already show it)."""
        for key, value in values.items():
            to_json = self.trait_metadata(key, "to_json", self._trait_to_json)
            with self._lock_property(**{key: to_json(value, self)}):
                setattr(self, key, value)


    @property
    def box(self) -> W.VBox:
        """The box to place in a layout."""
        return self._box

    @property
    def shown(self) -> bool:
        """A figure is on screen (the box is not hidden)."""
        return self._box.layout.display != "none"

    def fit_text(self) -> None:
        """Scale the titles and labels of the figure on screen to :attr:`fit_width` (no-op at the natural width)."""
        if not self._base_sizes or not self.natural_width or not self.fit_width:
            return
        updates = scaled_text_sizes(self._base_sizes, self.fit_width / self.natural_width)
        with self.batch_update():
            self.update_layout(updates)

    def apply_theme(self) -> None:
        """Draw the figure on screen with the dark look when :attr:`dark`, else with the look it was built with."""
        if self._light is None:
            return
        with self.batch_update():
            self.update_layout(dark_updates() if self.dark else self._light)

    def _remember(self, fig: go.Figure, width: float | None) -> None:
        self.natural_width = float(width) if width else None
        self._base_sizes = text_sizes(fig.layout)
        self._light = light_state(fig.layout)


def _marks_stale(name: str):
    """An override of plotly's ``name`` (a message to the open views) that first marks the saved state stale."""
    def send(self, *args, **kwargs):
        self._set_quietly(stale=True)
        return getattr(super(AppFigure, self), name)(*args, **kwargs)

    send.__name__ = name
    return send


# Every change plotly sends to the open views after the state was saved makes the saved state stale.
for _name in ("_send_relayout_msg", "_send_restyle_msg", "_send_update_msg", "_send_addTraces_msg",
              "_send_deleteTraces_msg", "_send_moveTraces_msg"):
    setattr(AppFigure, _name, _marks_stale(_name))


def replace_figure(widget: go.FigureWidget, fig: go.Figure) -> None:
    """Show ``fig`` in ``widget`` (traces and layout replaced in one update).

    For an :class:`AppFigure`: the figure's fixed width becomes the box's maximum width, the figure is autosized
    inside it (its height kept, plus a strip for plotly's toolbar and any title lines added), subplot titles wider than
    their panel break into lines, its text is scaled to the width the browser reported, and the box is shown.
    """
    layout = fig.layout
    fit = isinstance(widget, AppFigure)
    if fit:
        width = layout.width
        layout = go.Layout(layout)
        # on screen: titles wider than their panel break into lines, and plotly's toolbar gets a strip of its own
        wrap, extra = wrapped_titles(layout)
        if wrap:
            layout.update(wrap)
        top = (layout.margin.t if layout.margin and layout.margin.t is not None else 100) + extra + MODEBAR_PX
        layout.margin.t = round(top)
        if layout.height:
            # whole pixels: plotly.js rounds the autosized element's height, and a fractional layout height makes every
            # later update look like a resize (a full redraw, 20-30 ms, instead of the few edits it carries)
            layout.height = round(float(layout.height) + extra + MODEBAR_PX)
        layout.width = None
        layout.autosize = True
        widget._remember(fig, width)
        if widget.dark:
            layout.update(dark_updates())
        widget.box.layout.max_width = f"{int(width)}px" if width else None
        if widget.row:  # side by side: start from the natural width, shrink alone on a narrow line, else wrap
            widget.box.layout.flex = f"0 1 {int(width)}px" if width else "1 1 auto"
    with widget.batch_update():
        widget.data = ()
        widget.layout = layout
        widget.add_traces(fig.data)
    if fit:
        widget.fit_text()
        widget.save_state()
        with widget.hold_sync():
            widget.has_figure = True
            widget.n_traces = len(widget.data)
            widget.n_shown += 1
        widget.box.layout.display = None


def hide_figure(widget: AppFigure) -> None:
    """Hide ``widget``'s box; the next :func:`replace_figure` shows it again."""
    widget.box.layout.display = "none"


def figure_row(*items: "AppFigure | W.Widget") -> W.HBox:
    """Figures (and other widgets) side by side, wrapping onto the next line when the output area is too narrow.

    :class:`AppFigure` items are placed by their boxes; build them with ``AppFigure(row=True)``.
    """
    children = [it.box if isinstance(it, AppFigure) else it for it in items]
    return W.HBox(children, layout=W.Layout(flex_flow="row wrap", width="100%", align_items="flex-start"))
