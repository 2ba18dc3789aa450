"""The fusion app's panels: the word / patch views, and the checks (ground truth, deletion, modality dependence,
counterfactual).  Mixins of :class:`explorer.widgets.fusion_app.FusionApp` (an :class:`~explorer.widgets.base.AppBase`:
``quiet()`` is its re-entrancy guard); composition only.

Every view reads the cached :class:`explorer.fusion.Alignment` through the method registry: the map on screen
is ``al.word_map(method, word, **settings)``, the bars ``al.patch_words(method, patch, **settings)``, titles and
menus the registry's labels.  Only on-demand methods (Integrated Gradients) run the model, once per word.
"""

from __future__ import annotations

import html
import time

import numpy as np

from ..attention.faithfulness import Stopped
from ..export import ReproduceError
from ..fusion import FusionInputError, align, deletion_auc, load_fusion_model, modality_report, pointing_hits
from ..fusion.compare import check_comparable, compare_maps, randomised_copy, word_maps_ab
from ..fusion.faithfulness import fusion_randomisation_check
from ..models.base import model_lock
from ..io import ImageLoadError
from ..models import DeviceError, ModelLoadError
from ..viz import compare_words as VCW
from ..viz import fusion as VF
from ..viz.images import json_grid
from .figures import hide_figure, replace_figure
from .messages import guarded

USER_ERRORS = (FusionInputError, ImageLoadError, ModelLoadError, DeviceError, ValueError, IndexError, KeyError, ReproduceError)
#: what the Compare box offers for "B = A with every cross-modal layer re-drawn" (a fusion that learned nothing)
from .base import RANDOMISED  # noqa: E402

_guarded = guarded(USER_ERRORS)


def method_menu(al) -> list[tuple[str, str]]:
    """Method dropdown options for ``al``: the registry's labels of what it holds, then the on-demand methods."""
    return [(al.method(m).label + (" — on demand" if al.method(m).on_demand else ""), m) for m in al.offered]


class WordPatchViews:
    """The word overlay, the per-patch word bars and the word × patch matrix (state: ``word``, ``patch``)."""

    def settings(self) -> dict:
        """The on-screen settings a method may read: ``{"layer", "head"}`` (each method keeps what it takes)."""
        return dict(layer=int(self.layer.value), head=self.head.value)

    def select_word(self, word: int):
        """Show word ``word`` (0-based clickable word), as clicking it in the caption does."""
        self.word = int(word)
        if self.words.value != self.word:
            with self.quiet():  # the toggle's observer would call back here: one update is enough
                self.words.value = self.word
        self._update()
        if self.sort.value == "word":
            self._update_matrix()

    def current_map(self) -> np.ndarray:
        """``(gh, gw)`` map on screen: selected word, method, layer and head (on-demand methods: computed now, kept)."""
        return self.alignment.word_map(self.method.value, self.word, adapter=self.adapter, **self.settings())

    def _title(self) -> str:
        return VF.word_title(self.alignment, self.word, self.method.value, **self.settings())

    @_guarded
    def _update(self, rebuild: bool = False):
        if self.alignment is None:
            return
        t0 = time.perf_counter()
        al = self.alignment
        m = self.current_map()
        method = al.method(self.method.value)
        diverging = method.diverging or bool(np.nanmin(m) < 0)
        if rebuild or len(self.main.data) != 3 or diverging or self.main.data[2].zmid is not None:
            fig = VF.word_view(al, self.word, method.name, patch=self.patch, opacity=self.opacity.value,
                               colorscale=self.cscale.value, **self.settings())
            replace_figure(self.main, fig)
            self.main.data[0].on_click(self._on_image_click)
            self.main.data[0].on_hover(self._on_image_click)
        else:
            marker = VF.patch_marker(self.patch, al.grid, al.patch_size) if self.patch is not None else None
            with self.main.batch_update():
                hm = self.main.data[2]
                hm.z = json_grid(m)
                hm.zmax = float(np.nanmax(m))
                hm.opacity = self.opacity.value
                hm.colorscale = self.cscale.value
                hm.colorbar.title.text = hm.name = method.short
                self.main.layout.annotations[1].text = self._title()
                self.main.layout.shapes = [dict(marker, xref=x, yref=y) for x, y in (("x", "y"), ("x2", "y2"))] if marker else []
        note = al.layer_note(method.name, self.settings()["layer"]) if method.layer else None
        self.layer_note.value = (f"<div style='font-size:12px;color:var(--jp-warn-color0,#8a5300)'>ⓘ {html.escape(note)}</div>" if note else "")
        self._update_bars()
        self._show_b()
        self.last_update_ms = (time.perf_counter() - t0) * 1e3
        self._start_live()

    def patch_words(self) -> np.ndarray:
        """``(W,)`` value of the selected patch (or of each word's peak) for every word, current method and settings;
        on-demand methods: NaN for the words not computed yet (hovering never runs the model)."""
        return self.alignment.patch_words(self.method.value, self.patch, **self.settings())

    def _update_bars(self):
        al = self.alignment
        title = (f"words for patch {self.patch}" if self.patch is not None else "each word's peak (hover / click a patch)")
        method = al.method(self.method.value)
        if method.on_demand:
            title += f" — {method.short}: words computed so far (click a word)"
        values = self.patch_words()
        labels = VF.word_labels(al.word_strings)
        if len(self.bars.data) == 1 and list(self.bars.data[0].y) == labels:  # same words: update in place
            with self.bars.batch_update():
                self.bars.data[0].x = values
                self.bars.data[0].marker.color = VF.bar_colours(len(labels), self.word)
                self.bars.layout.title.text = title
                self.bars.layout.xaxis.title.text = method.short
        else:
            replace_figure(self.bars, VF.word_bars(al.word_strings, values, selected=self.word, title=title, value_name=method.short))
            self.bars.data[0].on_click(self._on_bar_click)

    def select_patch(self, patch: int | None):
        """Show how every word goes with ``patch`` (row-major index), as hovering / clicking it does."""
        self.patch = None if patch is None else int(patch)
        self._update()

    def _on_image_click(self, trace, points, state):
        if not points.xs or self.alignment is None:
            return
        p = self.alignment.patch_size
        gh, gw = self.alignment.grid
        r, c = int(points.ys[0] // p), int(points.xs[0] // p)
        if 0 <= r < gh and 0 <= c < gw and r * gw + c != self.patch:
            self.select_patch(r * gw + c)

    def _on_bar_click(self, trace, points, state):
        if points.point_inds:
            self.select_word(points.point_inds[0])

    @_guarded
    def _update_matrix(self):
        if self.alignment is None:
            return
        al = self.alignment
        fig, self._order = VF.alignment_matrix(al.matrix, al.word_strings, sort_by=self.word if self.sort.value == "word" else None,
                                               title=al.matrix_name, colorscale=self.cscale.value)
        replace_figure(self.matrix, fig)
        self.matrix.data[0].on_click(self._on_matrix_click)

    def _on_matrix_click(self, trace, points, state):
        if not points.point_inds:
            return
        r, c = points.point_inds[0]
        self.patch = int(self._order[c])
        self.select_word(int(r))


class FusionChecks:
    """Ground truth (pointing game), deletion AUC, modality dependence and the counterfactual word."""

    def scene_word_masks(self) -> dict[int, np.ndarray]:
        """Ground truth of a generated scene: clickable word → object mask (empty if the words are not the text's words)."""
        if self.scene is None or self.alignment is None:
            return {}
        text_words = self.alignment.meta["text"].lower().split()
        if [w.lower() for w in self.alignment.word_strings] != text_words[: len(self.alignment.words)]:
            return {}
        return {k: m for k, m in self.scene.word_masks(" ".join(text_words)).items() if k < len(self.alignment.words)}

    def _ground_truth(self):
        masks = self.scene_word_masks()
        if not masks:
            self.truth.value = ""
            return
        hits = pointing_hits(self.alignment, masks)
        rows = "".join(f"<tr><td>{html.escape(self.alignment.method(m).label)}</td><td>{sum(h)}/{len(h)}</td></tr>"
                       for m, h in hits.items())
        self.truth.value = (f"<div style='font-size:12px'><b>Ground truth</b> (generated scene): pointing game — does each "
                            f"object word's map peak on its object?<table>{rows}</table></div>")
        self.pointing = hits

    def _start_live(self) -> None:
        """Deletion AUC of the word map on screen against random orders, in the background after the map appears
        (only when the map changed: hovering a patch never restarts it)."""
        al = self.alignment
        if al is None:
            return
        key = (id(al), self.method.value, self.word, tuple(sorted(self.settings().items())))
        if key == getattr(self, "_live_key", None):
            return
        self._live_key = key
        if self.method.value not in al.available and not al.has(self.method.value, self.word, **self.settings()):
            self.live.cancel()  # an on-demand map not computed yet: nothing on screen to check
            self.live_text.value = ""
            return
        adapter, loaded, text, m = self.adapter, self.loaded, al.meta["text"], np.array(self.current_map())
        word = al.word_strings[self.word]
        label = al.describe(self.method.value, **self.settings())
        self.live_text.value = f"<div style='font-size:12px'><i>Deletion AUC of '{html.escape(word)}': computing…</i></div>"

        def done(d):
            self.live_deletion = d
            lo, hi = d["band"]
            colour = {"better than random": "var(--jp-success-color0,#1b5e20)", "worse than random": "var(--jp-error-color0,#8b0000)"}.get(d["verdict"], "var(--jp-ui-font-color2,#666)")
            what = html.escape(getattr(adapter, "output_name", "") or "output")
            self.live_text.value = (f"<div style='font-size:12px'>Deletion AUC of '{html.escape(word)}' ({html.escape(label)}): "
                                    f"{d['map']:.3f}; {d['orders']} random orders: 95% between {lo:.3f} and {hi:.3f} — "
                                    f"<span style='color:{colour}'>{d['verdict']}</span>.<br>"
                                    f"<span style='color:var(--jp-ui-font-color2,#666)'>The AUC is the model's {what} "
                                    f"averaged while the map's patches are blanked, highest first, in the {what}'s own "
                                    f"units (a logit is below 0 where the model reads no match, so the AUC can be "
                                    f"negative): lower than the random orders = the map found what the output needs."
                                    f"</span></div>")

        def failed(e):
            if not isinstance(e, Stopped):
                self.live_text.value = f"<div style='font-size:12px;color:var(--jp-error-color0,#8b0000)'>Deletion AUC not computed: {html.escape(str(e))}</div>"

        self.live.submit(lambda stop: deletion_auc(adapter, loaded, text, m, lock=model_lock(), should_stop=stop), done, failed)

    @_guarded
    def run_sanity(self):
        """Cascading randomisation of the cross-modal layers for the word map on screen (per level, with a verdict)."""
        al = self.alignment
        s = fusion_randomisation_check(self.adapter, self.loaded, al.meta["text"], self.method.value, self.word,
                                       **self.settings())
        rows = "".join(f"<tr><td>{n}</td><td>{r:.3f}</td><td>{x:.3f}</td></tr>" for n, r, x in zip(s.levels, s.spearman, s.ssim))
        colour = {"depends": "var(--jp-success-color0,#1b5e20)", "mixed": "var(--jp-warn-color1,#b35900)", "blind": "var(--jp-error-color0,#8b0000)"}[s.outcome]
        self.truth.value += (f"<div style='font-size:12px'><b>Randomisation check</b> of '{html.escape(al.word_strings[self.word])}' "
                             f"({html.escape(al.describe(self.method.value, **self.settings()))}): <span style='color:{colour}'>"
                             f"{html.escape(s.verdict())}</span>.<table><tr><th>top cross-modal layers randomised</th>"
                             f"<th>Spearman</th><th>SSIM</th></tr>{rows}</table></div>")
        return s

    @_guarded
    def run_deletion(self):
        """Deletion AUC of the current word's map (and a random order) for the current input."""
        al = self.alignment
        d = deletion_auc(self.adapter, self.loaded, al.meta["text"], self.current_map())
        lo, hi = d["band"]
        colour = {"better than random": "var(--jp-success-color0,#1b5e20)", "worse than random": "var(--jp-error-color0,#8b0000)"}.get(d["verdict"], "var(--jp-warn-color1,#b35900)")
        self.truth.value += (f"<div style='font-size:12px'>Deletion AUC of '{html.escape(al.word_strings[self.word])}' "
                             f"({html.escape(al.describe(self.method.value, **self.settings()))}): {d['map']:.3f}; "
                             f"{d['orders']} random orders: mean {d['random']:.3f}, 95% in {lo:.3f}–{hi:.3f} — "
                             f"<span style='color:{colour}'>{d['verdict']}</span>.</div>")
        return d

    @_guarded
    def run_modality(self):
        """How much the output depends on the image and on the text (masking + Integrated Gradients)."""
        r = modality_report(self.adapter, self.loaded, self.alignment.meta["text"])
        self.report = r
        replace_figure(self.modality, VF.modality_figure(r, output_name=self.adapter.output_name))
        self.modality_box.children = [self.modality.box]
        top = int(np.argmax(np.abs(r.word_attribution))) if len(r.word_attribution) else 0
        warn = "".join(f"<div style='color:var(--jp-warn-color1,#b35900)'>⚠ {html.escape(w)}</div>" for w in r.warnings)
        self.modality_text.value = (
            f"<div style='font-size:12px'>{html.escape(r.headline())} Word with the largest IG attribution: "
            f"'{html.escape(self.alignment.word_strings[top])}'. Masking the image moves the output "
            f"{r.masked['image'] - r.score:+.3f}, masking the text {r.masked['text'] - r.score:+.3f}.{warn}</div>")
        return r

    @_guarded
    def counterfactual(self, new_word: str):
        """Replace the selected word by ``new_word``; show both texts' maps of that word side by side (the on-screen
        method and settings)."""
        al = self.alignment
        new_word = (new_word or "").strip()
        if not new_word or len(new_word.split()) != 1:
            raise FusionInputError("Type one word to put in place of the selected word (e.g. 'blue' for 'red').")
        edited_text = self.adapter.replace_word(self.adapter.tokenize(al.meta["text"]), al.words[self.word], new_word).text
        other = align(self.adapter, self.loaded, edited_text)
        k = min(self.word, len(other.words) - 1)
        m = self.method.value if self.method.value in other.offered else other.available[0]
        s = self.settings()
        a = al.word_map(m, self.word, adapter=self.adapter, **s)
        b = other.word_map(m, k, adapter=self.adapter, **s)
        panels = {f"'{al.word_strings[self.word]}' · {al.score:+.2f}": a, f"'{other.word_strings[k]}' · {other.score:+.2f}": b}
        replace_figure(self.cf, VF.counterfactual_figure(al.image, panels, colorscale=self.cscale.value, opacity=self.opacity.value))
        self.cf_box.children = [self.cf.box]
        self.cf_text.value = (f"<div style='font-size:12px'>“{html.escape(al.meta['text'])}” → {html.escape(al.answer)}<br>"
                              f"“{html.escape(edited_text)}” → {html.escape(other.answer)}<br>"
                              f"{html.escape(al.describe(m, **s))}; shared colour scale.</div>")
        self.counterfactual_alignment = other
        return other


class ABComparison:
    """Model B beside the model on screen (A): the same image, text, word, method, layer, head and patch; B's map, A's,
    and B − A with their rank correlation (and, on a generated scene, each one's pointing game and energy in the
    object's box).  B's :class:`~explorer.fusion.Alignment` is computed once per (input, text, B) and kept, so word /
    method / layer / head / patch changes are served from the two caches.

    State: ``model_b``, ``name_b`` (``None`` when not comparing), ``alignment_b``, ``comparison`` (the
    :class:`explorer.fusion.compare.MapComparison` on screen).
    """

    model_b = None
    name_b = None
    alignment_b = None
    comparison = None
    _b_input = None  # (B, LoadedImage, text, A) that alignment_b was computed (and checked against A) for
    _b_view = None  # what the comparison figure shows, but the patch (a patch move only moves the outline)

    @_guarded
    def compare(self, model_b, *, seed: int = 0):
        """Show model B beside A.  ``model_b``: a fusion model name, hub id or folder, ``"randomised copy"`` (A with
        every cross-modal layer re-drawn, seeded by ``seed``: the randomisation check's deepest level), an adapter, or
        ``None`` to stop comparing.  A B that reads other words in the text, or sees another patch grid, is refused
        (the message says what differs) and the comparison on screen, if any, stays."""
        if model_b is None or (isinstance(model_b, str) and not model_b.strip()):
            self.model_b = self.name_b = self.alignment_b = self.comparison = None
            self._b_input = self._b_view = None
            self.compare_off.disabled = True
            self.compare_note.value = ""
            hide_figure(self.compare_fig)
            return
        if self.adapter is None or self.alignment is None:
            raise ValueError("Load model A, an image and a text first.")
        names = list(dict.fromkeys(self.alignment.layer_names))
        b, name = self.pick_model_b(
            model_b, load=lambda n: load_fusion_model(n, device=self.device_dd.value),
            redrawing="re-drawing A's cross-modal layers…",
            randomise=lambda: (randomised_copy(self.adapter, names, seed=seed),
                               f"{self.adapter.model_id} randomised ({len(names)} cross-modal layers, seed {int(seed)})"))
        check_comparable(self.adapter, b, self.alignment.meta["text"], name_a=f"A ({self.adapter.model_id})",
                         name_b=f"B ({name})")
        al_b = self._alignment_b(b)
        self.model_b, self.name_b, self.alignment_b = b, name, al_b
        self._b_input, self._b_view = (b, self.loaded, self.alignment.meta["text"], self.adapter), None
        self.compare_off.disabled = False
        self._show_b()

    def _alignment_b(self, b):
        """B's alignment of the input and text on screen: the kept one when it was computed for them and ``b``, else
        one forward + backward of ``b`` (the caller keeps it, with :attr:`_b_input`)."""
        text = self.alignment.meta["text"]
        key = self._b_input
        if key is not None and key[0] is b and key[1] is self.loaded and key[2] == text:
            return self.alignment_b
        with self.computing("B: forward + backward"):
            return align(b, self.loaded, text)

    def _show_b(self) -> None:
        """Draw the comparison for the view on screen (a no-op when not comparing).  A view B cannot show (a method it
        lacks, a text its tokenizer reads otherwise) hides the figure and says why; the comparison stays on."""
        if self.model_b is None or self.alignment is None:
            return
        al, s, method = self.alignment, self.settings(), self.method.value
        name_b = f"B ({self.name_b})"
        try:
            key = self._b_input
            if key is None or key[1] is not self.loaded or key[2] != al.meta["text"] or key[3] is not self.adapter:
                check_comparable(self.adapter, self.model_b, al.meta["text"], name_a=f"A ({self.adapter.model_id})",
                                 name_b=name_b)
                self.alignment_b = self._alignment_b(self.model_b)
                self._b_input = (self.model_b, self.loaded, al.meta["text"], self.adapter)
            a, b = word_maps_ab(al, self.alignment_b, method, self.word, adapter_a=self.adapter, adapter_b=self.model_b,
                                name_b=name_b, **s)
            cmp = compare_maps(a, b, mask=self.scene_word_masks().get(self.word))
        except USER_ERRORS as e:
            self.comparison = self._b_view = None
            hide_figure(self.compare_fig)
            self.compare_note.value = ("<div style='font-size:12px;color:var(--jp-warn-color0,#8a5300)'>ⓘ No A/B comparison "
                                       f"for this view: {html.escape(str(e))}</div>")
            return
        self.comparison = cmp
        m = al.method(method)
        fig = VCW.word_comparison_figure(al.image, cmp, patch_size=al.patch_size, word=al.word_strings[self.word],
                                         description=al.describe(method, **s), name_a=self.adapter.model_id,
                                         name_b=self.name_b, colorscale=self.cscale.value, opacity=self.opacity.value,
                                         label=m.short, diverging=m.diverging, patch=self.patch)
        view = ((al, self.alignment_b, self.model_b),
                (method, self.word, tuple(sorted(s.items())), self.cscale.value, float(self.opacity.value)))
        last = self._b_view
        same = last is not None and all(x is y for x, y in zip(view[0], last[0])) and view[1] == last[1]
        if same and self.compare_fig.shown and len(self.compare_fig.data) == 6:
            with self.compare_fig.batch_update():  # only the patch moved: move its outline
                self.compare_fig.layout.shapes = fig.layout.shapes
        else:
            replace_figure(self.compare_fig, fig)
            self._b_view = view
        self.compare_note.value = ""
