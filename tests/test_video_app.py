"""The video MAE app: the ratio sweep is computed once per (clip, strategy, seed); frame and ratio moves are served
from the cache and show the right frame; bad clips and models are explained in the app."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

import explorer.widgets.video_app as VA
from explorer.viz.images import data_uri
from explorer.widgets.video_app import VIDEO_RATIOS, VideoMAEApp


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from _tiny import save_tiny_videomae

    return save_tiny_videomae(tmp_path_factory.mktemp("vmae"))


def test_frames_and_ratios_come_from_the_cache(folder, monkeypatch):
    app = VideoMAEApp(model=str(folder), clip="generated:10000003", ratio=0.9)
    assert set(app.sweep) == set(VIDEO_RATIOS) and app.frame.max == 4 and app.frame.min == 1 and app.status.value.count("⚠") == 0
    calls = []
    monkeypatch.setattr(VA, "reconstruct_video", lambda *a, **k: calls.append(1))
    app.frame.value = 3  # frames are numbered from 1 on screen: the third frame is index 2
    rec = app.sweep[0.9]
    assert app.fig.data[0].source == data_uri(rec.frames[2], min_side=160)
    assert app.fig.data[2].source == data_uri(rec.prediction[2], min_side=160)
    app.ratio.value = 0.5
    assert app.result is app.sweep[0.5] and app.result.mask.sum() < app.sweep[0.9].mask.sum()
    assert calls == [] and app.last_update_ms < 1000
    ys = app.curve.data[0].y
    assert len(ys) == len(VIDEO_RATIOS) and ys[0] == pytest.approx(app.sweep[0.5].psnr_masked)


def test_strategy_change_recomputes_and_tube_keeps_patches_hidden_in_time(folder):
    app = VideoMAEApp(model=str(folder), clip="generated:10000011", ratio=0.75)
    app.strategy.value = "tube"
    m = app.result.mask
    assert all(np.array_equal(m[0], m[k]) for k in range(len(m)))
    app.strategy.value = "frame"
    assert set(app.result.mask.reshape(len(app.result.mask), -1).mean(1).tolist()) <= {0.0, 0.5, 1.0}


def test_bad_clips_and_models_are_explained(folder):
    app = VideoMAEApp(model=str(folder), clip="generated:10000003")
    app._set_clip(b"not a video at all")
    assert "⚠" in app.status.value
    app._set_clip(np.zeros((1, 32, 32, 3), np.float32))  # one frame
    assert "⚠" in app.status.value and "frame" in app.status.value
    app.model_box.value = "mini-mae"
    app.load_btn.click()
    assert "not a VideoMAEForPreTraining" in app.status.value


def test_sampling_is_the_models_and_shown_on_a_time_line(folder):
    app = VideoMAEApp(model=str(folder), clip="generated:10000003")
    assert app.adapter.frame_stride == 4 and app.stride.value == 4 and app.sampling.value == "strided"
    v = app.video  # a generated clip is 4 x 4 frames long; 4 frames at stride 4 span 13, centred
    assert v.decoded == 16 and list(v.indices) == [1, 5, 9, 13] and np.allclose(v.times_s, v.indices / 8)
    red = app.timeline.data[1]
    assert list(red.customdata) == [1, 5, 9, 13] and list(red.text) == ["1", "2", "3", "4"]
    assert len(app.timeline.data[0].x) == 16 and "consecutive" not in app.timeline.layout.title.text
    from explorer.data.clips import make_clip

    assert np.allclose(app.sweep[0.9].frames, make_clip(10000003, frames=16, size=32).frames[[1, 5, 9, 13]], atol=1e-6)
    before = set(app._cache)
    app.sampling.value = "uniform"
    assert list(app.video.indices) == [2, 6, 10, 14] and list(app.timeline.data[1].customdata) == [2, 6, 10, 14]
    assert len(app._cache) == len(before) + 1  # another clip for the model: another sweep
    app.stride.value = 8
    app.sampling.value = "strided"  # 4 frames at stride 8 need 25 of 16: padded, and said
    assert list(app.video.indices) == [0, 8, 15, 15] and "padded" in app.status.value
    assert "padded" in app.timeline.layout.title.text


def test_mini_model_reads_consecutive_frames():
    app = VideoMAEApp(model="mini-video-mae", clip="generated:10000003")
    assert app.stride.value == 1 and list(app.video.indices) == list(range(12, 20))
    assert app.timeline.layout.title.text.startswith("8 of 32 frames · consecutive frames, centred")


@pytest.mark.parametrize("view", ["video_frames", "video_filmstrip", "video_sampling"])
def test_export_from_the_app_reproduces_byte_identically(folder, tmp_path, view):
    from explorer import export

    app = VideoMAEApp(model=str(folder), clip="generated:10000011", ratio=0.75)
    app.frame.value = 3  # the third frame, index 2
    app.export_view.value = view
    app.export_panel.folder.value = str(tmp_path)
    app.export_panel.formats["pdf"].value = False
    res = app.export_panel.export()
    assert res is not None, app.export_panel.status.value
    opts = res.sidecar["recipe"]["options"]
    assert res.sidecar["recipe"]["name"] == view and opts["clip"] == "generated:10000011" and opts["stride"] == 4
    if view == "video_frames":
        assert opts["frames"] == [0, 2, 3] and opts["seed"] == 0 and opts["ratio"] == 0.75
    rep = export.reproduce(res.files["json"], out=tmp_path / "again")
    assert rep.identical, rep.summary()
    again = app.export_panel.export()  # same name again: a new file, the first one untouched
    assert again.files["png"] != res.files["png"] and again.files["png"].name.endswith("-2.png")
    assert export.read_sidecar(res.files["png"])["recipe"] == res.sidecar["recipe"]


def test_uploaded_clip_is_stored_with_the_export_and_checked(folder, tmp_path):
    from explorer import export
    from explorer.video import write_video

    write_video(tmp_path / "up.avi", np.random.default_rng(1).random((20, 40, 48, 3)).astype(np.float32))
    data = (tmp_path / "up.avi").read_bytes()
    upload = ({"name": "up.avi", "type": "video/x-msvideo", "size": len(data),
               "last_modified": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc), "content": memoryview(data)},)
    app = VideoMAEApp(model=str(folder), clip="generated:10000003")
    app.upload.value = upload
    assert app.video.name == "up.avi" and app.video.decoded == 20
    app.export_panel.folder.value = str(tmp_path / "figs")
    app.export_panel.formats["pdf"].value = app.export_panel.formats["svg"].value = False
    res = app.export_panel.export()
    opts = res.sidecar["recipe"]["options"]
    stored = tmp_path / "figs" / opts["video"]
    assert opts["video"].startswith("inputs/") and stored.read_bytes() == (tmp_path / "up.avi").read_bytes()
    assert export.reproduce(res.files["json"], out=tmp_path / "figs" / "again").identical
    stored.write_bytes(stored.read_bytes()[:-200] + bytes(200))  # the clip changed since
    with pytest.raises(export.ReproduceError, match="SHA-256"):
        export.reproduce(res.files["json"], out=tmp_path / "figs" / "third")


def test_python_export_of_an_array_clip(folder, tmp_path):
    from explorer import export, load_model

    model = load_model(str(folder))
    clip = np.random.default_rng(2).random((6, 32, 32, 3)).astype(np.float32)
    opts = dict(sampling="uniform", short="loop", ratio=0.5, strategy="random", seed=3, frames=[1])
    res = export.export_recipe("video_frames", tmp_path / "arr", model=model, inputs=[], options=opts, formats=["png"],
                               attach={"video": clip})
    stored = res.sidecar["recipe"]["options"]["video"]
    assert (tmp_path / stored).suffix == ".npy" and (tmp_path / stored).is_file()
    assert export.reproduce(res.files["json"]).identical
    with pytest.raises(ValueError, match="either clip="):
        export.export_recipe("video_frames", tmp_path / "x", model=model, inputs=[], options={}, formats=["png"])


def test_app_export_refused_without_overwrite_stores_no_clip(folder, tmp_path):
    """The app hands the uploaded clip to the export; with a typed name that exists and overwrite off the export is
    refused and says so, and no clip is stored; with overwrite on the figure and its clip are written."""
    from explorer import export
    from explorer.video import write_video

    def upload(seed):
        write_video(tmp_path / f"up{seed}.avi", np.random.default_rng(seed).random((12, 32, 32, 3)).astype(np.float32))
        data = (tmp_path / f"up{seed}.avi").read_bytes()
        return ({"name": f"up{seed}.avi", "type": "video/x-msvideo", "size": len(data), "content": memoryview(data),
                 "last_modified": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)},)

    figs = tmp_path / "figs"
    app = VideoMAEApp(model=str(folder), clip="generated:10000003")
    app.export_view.value = "video_sampling"
    panel = app.export_panel
    panel.folder.value, panel.name.value = str(figs), "clip"
    for f in ("pdf", "svg"):
        panel.formats[f].value = False
    app.upload.value = upload(1)
    assert not (figs / "inputs").exists()  # loading a clip stores nothing
    first = panel.export()
    assert first is not None, panel.status.value
    stored = sorted((figs / "inputs").iterdir())
    assert len(stored) == 1 and first.sidecar["recipe"]["options"]["video"] == "inputs/" + stored[0].name
    app.upload.value = upload(2)
    assert panel.export() is None
    assert "Export failed" in panel.status.value and "not overwritten" in panel.status.value
    assert sorted((figs / "inputs").iterdir()) == stored and not (figs / "clip-2.png").exists()
    panel.overwrite.value = True
    again = panel.export()
    assert again is not None and again.files["png"] == first.files["png"], panel.status.value
    assert len(list((figs / "inputs").iterdir())) == 2
    assert export.reproduce(again.files["json"], out=figs / "re").identical


def test_the_status_line_shows_the_baselines_and_says_when_one_beats_the_model():
    """The numbers are the reconstruction's own baselines (computed on its masks) and the verdict follows them."""
    import re

    app = VideoMAEApp("mini-video-mae")
    seen = set()
    for ratio in VIDEO_RATIOS:
        app.ratio.value = ratio
        text = re.sub(r"<[^>]+>", "", app.status.value)
        res = app.result
        for name, v in res.baseline_psnr.items():
            assert f"{name.split(' (')[0]} {v:.2f} dB" in text
        best = max(res.baseline_psnr.values())
        beaten = "beats the model by" in text
        assert beaten == (best > res.psnr_masked)
        if beaten:
            assert f"by {best - res.psnr_masked:.2f} dB" in text
        seen.add(beaten)


def test_baseline_line_verdicts():
    from types import SimpleNamespace

    ahead = SimpleNamespace(psnr_masked=20.0, baseline_psnr={"Telea inpainting (per frame)": 19.5, "mean colour fill": 12.0})
    behind = SimpleNamespace(psnr_masked=18.0, baseline_psnr={"Telea inpainting (per frame)": 19.5, "mean colour fill": 12.0})
    assert VA.baseline_line(ahead) == "baselines Telea inpainting 19.50 dB, mean colour fill 12.00 dB"
    assert "<b>Telea inpainting beats the model by 1.50 dB here" in VA.baseline_line(behind)
    assert VA.baseline_line(SimpleNamespace(psnr_masked=1.0, baseline_psnr={})) == "no baselines"


def test_play_runs_at_the_pace_of_the_frames_the_model_reads(folder, tmp_path):
    """Play steps at the clip's own frame gap: a 20 fps file read at stride 1 plays at 50 ms a frame, at stride 2 at
    100 ms; a clip without timestamps keeps the default."""
    from explorer.data.clips import make_clip
    from explorer.video import write_video

    assert VA.play_interval_ms(np.array([0.0, 0.05, 0.1, 0.15])) == 50
    assert VA.play_interval_ms(np.full(4, np.nan)) == 250 and VA.play_interval_ms(np.zeros(1)) == 250
    assert VA.play_interval_ms(np.array([0.0, 10.0])) == 2000  # a slide show stays watchable
    write_video(tmp_path / "c.avi", make_clip(5, frames=40, size=64).frames, fps=20)
    app = VideoMAEApp(model=str(folder), clip=str(tmp_path / "c.avi"), ratio=0.9)
    app.sampling.value, app.stride.value = "strided", 1
    assert app.play.interval == 50, (app.video.sampling, app.video.times_s)
    app.stride.value = 2
    assert app.play.interval == 100
