"""Reopen from a sidecar in the video and multimodal apps: the exported view (model, clip / sample, masks, seed, frame,
sampling, export view) comes back from the .json and from the .png, every control as it was, and re-exports byte for
byte; figures of another app are refused by name.  Also the video ratio curve's marker at the ratio on screen."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import html
import json

import numpy as np
import pytest

import explorer.widgets.video_app as VA
from explorer.export import ReproduceError, export_recipe
from explorer.widgets.multimodal_app import MultiMAEApp
from explorer.widgets.video_app import VIDEO_RATIOS, VideoMAEApp

from test_multimodal_app import _png, av_folder, rgbd_folder  # noqa: F401 - the multimodal app's fast fixtures
from test_video_app import folder  # noqa: F401 - the video app's tiny VideoMAE
from _tiny import export_png as _export


def _same_files(a, b):
    assert b.files["png"].read_bytes() == a.files["png"].read_bytes()
    assert b.sidecar["recipe"] == a.sidecar["recipe"] and b.sidecar["provenance"] == a.sidecar["provenance"]


# ------------------------------------------------------------------------------------------------ video
def _video_view(app) -> dict:
    """Every control of the video app and what it shows."""
    r = app.result
    return dict(model=app.model_box.value, weights=app.adapter.weights_sha256, dtype=app.dtype_dd.value,
                clip=app.clip_dd.value, clip_sha=app.video.sha256, indices=list(app.video.indices),
                sampling=app.sampling.value, stride=app.stride.value, strategy=app.strategy.value, seed=app.seed.value,
                ratio=app.ratio.value, frame=app.frame.value, export_view=app.export_view.value,
                result=(r.ratio, r.strategy, r.seed), mask=r.mask.tolist(), title=app.fig.layout.title.text,
                sources=[t.source for t in app.fig.data[:3]], strip=[t.source for t in app.strip.data],
                marker=(app.curve.layout.shapes[0].x0, app.curve.layout.annotations[0].y))


def test_video_app_reopens_each_export_view_from_json_and_png(folder, tmp_path):  # noqa: F811
    app = VideoMAEApp(model=str(folder), clip="generated:10000011", ratio=0.75, strategy="random", seed=3,
                      sampling="uniform", stride=2)
    app.ratio.value = 0.6
    for view, frame in (("video_frames", 2), ("video_filmstrip", 4), ("video_sampling", 1)):
        app.frame.value, app.export_view.value = frame, view
        before = _video_view(app)
        assert before["ratio"] == 0.6 and before["sampling"] == "uniform" and before["stride"] == 2
        res = _export(app, tmp_path, view)
        o = res.sidecar["recipe"]["options"]
        assert o["frame"] == frame - 1 and (o["ratio"], o["strategy"], o["seed"]) == (0.6, "random", 3)  # also the time line
        again = VideoMAEApp.from_sidecar(res.files["json"])
        assert _video_view(again) == before and "⚠" not in again.status.value
        _same_files(res, _export(again, tmp_path, view + "-again"))
    from_png = VideoMAEApp.from_sidecar(res.files["png"])  # the PNG carries its sidecar
    assert _video_view(from_png) == before


def _upload(tmp_path, seed=1):
    from explorer.video import write_video

    write_video(tmp_path / "up.avi", np.random.default_rng(seed).random((12, 40, 48, 3)).astype(np.float32))
    data = (tmp_path / "up.avi").read_bytes()
    return ({"name": "up.avi", "type": "video/x-msvideo", "size": len(data), "content": memoryview(data),
             "last_modified": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)},)


def test_video_app_reopens_a_stored_clip_checked_against_its_hash(folder, tmp_path):  # noqa: F811
    app = VideoMAEApp(model=str(folder), clip="generated:10000003", strategy="frame", seed=5)
    app.upload.value = _upload(tmp_path)
    app.frame.value = 3
    before = _video_view(app)
    assert before["clip"] is None
    res = _export(app, tmp_path / "figs", "up")
    again = VideoMAEApp.from_sidecar(res.files["png"])
    assert _video_view(again) == before and again.clip_dd.value is None
    res2 = _export(again, tmp_path / "figs", "up-again")
    _same_files(res, res2)
    stored = tmp_path / "figs" / res.sidecar["recipe"]["options"]["video"]
    assert res2.sidecar["recipe"]["options"]["video"] == res.sidecar["recipe"]["options"]["video"]
    stored.write_bytes(stored.read_bytes()[:-200] + bytes(200))  # the clip changed since
    with pytest.raises(ReproduceError, match="SHA-256"):
        VideoMAEApp.from_sidecar(res.files["json"])
    app.export_panel.reopen_path.value = str(res.files["json"])
    app.export_panel.reopen_btn.click()  # refused in the app, and nothing on screen changed
    assert "⚠" in app.status.value and "SHA-256" in app.status.value and _video_view(app) == before


def test_video_restore_in_place_old_sidecars_and_refusals(folder, rgbd_folder, tmp_path):  # noqa: F811
    app = VideoMAEApp(model=str(folder), clip="generated:10000021", ratio=0.95, strategy="tube", seed=2)
    app.frame.value = 2
    before = _video_view(app)
    res = _export(app, tmp_path, "frames")
    app.seed.value, app.ratio.value, app.frame.value = 0, 0.5, 4
    app.export_view.value = "video_sampling"
    app.clip_dd.value = "generated:10000003"
    assert _video_view(app) != before
    app.export_panel.reopen_path.value = str(res.files["json"])
    app.export_panel.reopen_btn.click()  # the Reopen row: restore() in this app
    assert _video_view(app) == before and "⚠" not in app.status.value
    # a sidecar written before `frame` was recorded: the frame between the first and the last
    old = json.loads(res.files["json"].read_text())
    del old["recipe"]["options"]["frame"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert VideoMAEApp.from_sidecar(tmp_path / "old.json").frame.value == 2
    # a time line exported before it recorded its mask and frame: the app's defaults
    line = export_recipe("video_sampling", tmp_path / "line", model=app.adapter, inputs=[], formats=["png"],
                         options=dict(clip="generated:10000003", sampling="strided", stride=4))
    old = json.loads(line.files["json"].read_text())
    for k in ("ratio", "strategy", "seed", "fit", "frame"):
        del old["recipe"]["options"][k]
    (tmp_path / "old-line.json").write_text(json.dumps(old))
    v = VideoMAEApp.from_sidecar(tmp_path / "old-line.json")
    assert (v.ratio.value, v.strategy.value, v.seed.value, v.frame.value, v.export_view.value) == (0.9, "tube", 0, 1,
                                                                                                   "video_sampling")
    # options the app has no control for, and another app's figure: refused by name, nothing changes
    odd = export_recipe("video_frames", tmp_path / "odd", model=app.adapter, inputs=[], formats=["png"],
                        options=dict(clip="generated:10000003", ratio=0.3, frames=[1]))
    with pytest.raises(ValueError, match=r"ratio 0.3 is not on the slider.*frames \[1\]"):
        VideoMAEApp.from_sidecar(odd.files["json"])
    mm = export_recipe("multimodal", tmp_path / "rgbd", model=rgbd_folder, inputs=[], formats=["png"],
                       options=dict(sample="room:10000001", budgets={"rgb": 8, "depth": 0}))
    msg = "'multimodal' recipe; VideoMAEApp reopens 'video_frames', 'video_filmstrip', 'video_sampling' figures"
    with pytest.raises(ValueError, match=msg):
        VideoMAEApp.from_sidecar(mm.files["json"])
    app.export_panel.reopen_path.value = str(mm.files["png"])
    app.export_panel.reopen_btn.click()
    assert "⚠" in app.status.value and msg in html.unescape(app.status.value) and _video_view(app) == before
    with pytest.raises(ValueError, match="'video_frames' recipe; MultiMAEApp reopens 'multimodal' figures"):
        MultiMAEApp.from_sidecar(res.files["json"])


# ------------------------------------------------------------------------------------------------ video: the curve's marker
def _marker(app) -> dict:
    lay = app.curve.layout
    line, ring, label = lay.shapes[0], lay.shapes[1], lay.annotations[0]
    assert line.x0 == line.x1 and (ring.xanchor, ring.yanchor) == (label.x, label.y)
    return dict(x=line.x0, ring=(ring.xanchor, ring.yanchor), y=label.y, text=label.text, visible=ring.visible)


def test_video_ratio_curve_marks_the_ratio_on_screen_and_moves_in_place(folder, monkeypatch):  # noqa: F811
    app = VideoMAEApp(model=str(folder), clip="generated:10000003", ratio=0.9, strategy="random")
    model_y = list(app.curve.data[0].y)
    assert list(app.curve.data[0].x) == list(VIDEO_RATIOS)

    def at(r):
        return model_y[VIDEO_RATIOS.index(r)]

    assert _marker(app) == dict(x=0.9, ring=(0.9, at(0.9)), y=at(0.9), text=f"{at(0.9):.2f} dB", visible=True)
    traces = [t.to_plotly_json() for t in app.curve.data]
    rebuilt = []
    monkeypatch.setattr(VA, "replace_figure", lambda w, f: rebuilt.append(w))
    for r in (0.6, 0.75, 0.55):
        app.ratio.value = r
        m = _marker(app)
        assert m["x"] == app.ratio.value == r and m["y"] == at(r) == app.result.psnr_masked and m["ring"] == (r, at(r))
        assert m["text"] == f"{at(r):.2f} dB"
    assert [t.to_plotly_json() for t in app.curve.data] == traces  # the curves themselves are untouched
    assert app.curve not in rebuilt  # moved in place, not redrawn
    monkeypatch.undo()
    app.strategy.value = "tube"  # a new sweep draws a new curve, marked at the ratio on screen
    assert _marker(app)["x"] == 0.55 and _marker(app)["y"] == app.curve.data[0].y[VIDEO_RATIOS.index(0.55)]

    async def drag():  # in a kernel (a running event loop) the marker follows once the slider rests
        app.ratio.value = 0.8
        app.ratio.value = 0.85
        moved_at_once = _marker(app)["x"]
        await asyncio.sleep(VA.MARKER_DELAY_S + 0.2)
        return moved_at_once, _marker(app)["x"]

    assert asyncio.run(drag()) == (0.55, 0.85)


# ------------------------------------------------------------------------------------------------ multimodal
def _mm_view(app) -> dict:
    """Every control of the multimodal app and what it shows."""
    sha = hashlib.sha256()
    for k in sorted(app.inputs):
        sha.update(k.encode() + np.ascontiguousarray(app.inputs[k], np.float32).tobytes())
    return dict(model=app.model_dd.value, weights=app.adapter.weights_sha256, sample=app.sample_dd.value,
                inputs=sha.hexdigest(), sliders={k: s.value for k, s in app._sliders.items()}, total=app.total.value,
                seed=app.seed.value, frame=app.frame.value, counts=app.result.counts, request=app._request,
                title=app.fig.layout.title.text, sources=[getattr(t, "source", None) for t in app.fig.data],
                table=app.table.value)


def test_multimodal_app_reopens_budgets_and_a_dirichlet_split(rgbd_folder, folder, tmp_path):  # noqa: F811
    app = MultiMAEApp(rgbd_folder, "room:10000004", budgets={"rgb": 0.5, "depth": 0.25}, seed=5, device="cpu")
    before = _mm_view(app)
    assert before["counts"] == {"rgb": 8, "depth": 4} and before["sample"] == "room:10000004"
    res = _export(app, tmp_path, "budgets")
    for path in (res.files["json"], res.files["png"]):
        again = MultiMAEApp.from_sidecar(path)
        assert _mm_view(again) == before and "⚠" not in again.status.value
    _same_files(res, _export(again, tmp_path, "budgets-again"))
    app.total.value, app.seed.value = 10, 2
    app.dirichlet_btn.click()
    split = _mm_view(app)
    assert split["request"] == {"total": 10, "seed": 2}
    res2 = _export(app, tmp_path, "dirichlet")
    again = MultiMAEApp.from_sidecar(res2.files["json"])
    assert _mm_view(again) == split
    _same_files(res2, _export(again, tmp_path, "dirichlet-again"))
    # the Reopen row brings back the first view in place; another app's figure is refused and changes nothing
    app.export_panel.reopen_path.value = str(res.files["png"])
    app.export_panel.reopen_btn.click()
    assert _mm_view(app) == before and "⚠" not in app.status.value
    line = export_recipe("video_sampling", tmp_path / "line", model=str(folder), inputs=[],
                         options=dict(clip="generated:10000003"), formats=["png"])
    app.export_panel.reopen_path.value = str(line.files["json"])
    app.export_panel.reopen_btn.click()
    assert "'video_sampling' recipe; MultiMAEApp reopens 'multimodal' figures" in html.unescape(app.status.value)
    assert _mm_view(app) == before


def test_multimodal_app_reopens_stored_uploads_and_an_av_frame(rgbd_folder, av_folder, tmp_path):  # noqa: F811
    app = MultiMAEApp(rgbd_folder, device="cpu")
    rng = np.random.default_rng(3)
    app.set_rgbd(_png((rng.random((40, 40, 3)) * 255).astype(np.uint8)), _png(np.full((40, 40), 2500, np.uint16)))
    app.set_budgets({"rgb": 0.75, "depth": 0.5})
    app.seed.value = 4
    before = _mm_view(app)
    res = _export(app, tmp_path / "figs", "upload")
    again = MultiMAEApp.from_sidecar(res.files["json"])
    assert {k: v for k, v in _mm_view(again).items() if k != "sample"} == {k: v for k, v in before.items() if k != "sample"}
    assert again.sample_dd.value is None and again._key.startswith("upload:")
    _same_files(res, _export(again, tmp_path / "figs", "upload-again"))
    # a fresh app on another model (audio-visual) comes back to the RGB-D view in place
    av = MultiMAEApp(av_folder, "clip:10000005", budgets={"video": 0.25, "audio": 0.5}, seed=1, device="cpu")
    av.frame.value = 6
    av_view = _mm_view(av)
    av_res = _export(av, tmp_path / "figs", "av")
    assert av_res.sidecar["recipe"]["options"]["frame"] == 5
    av.export_panel.reopen_path.value = str(res.files["png"])
    av.export_panel.reopen_btn.click()
    assert {k: v for k, v in _mm_view(av).items() if k != "sample"} == {k: v for k, v in before.items() if k != "sample"}
    again = MultiMAEApp.from_sidecar(av_res.files["png"])
    assert _mm_view(again) == av_view and again.frame.value == 6
    _same_files(av_res, _export(again, tmp_path / "figs", "av-again"))
    # a masking strategy the app has no control for
    tube = export_recipe("multimodal", tmp_path / "tube", model=av_folder, inputs=[], formats=["png"],
                         options=dict(sample="clip:10000005", budgets={"video": 8, "audio": 0}, strategy={"video": "tube"}))
    with pytest.raises(ValueError, match="masks video by tube: the app masks every modality at random"):
        MultiMAEApp.from_sidecar(tube.files["json"])
