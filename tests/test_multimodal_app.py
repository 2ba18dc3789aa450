"""MultiMAEApp: budgets, presets and Dirichlet split, cache, in-place frame moves, uploads, bad input."""

import io
import wave

import cv2
import numpy as np
import pytest

from explorer.multimodal import Modality, MultiModalInputError
from explorer.video import write_video
from explorer.widgets import multimodal_app as MA
from explorer.widgets.multimodal_app import MultiMAEApp

from _tiny import DEPTH, RGB, save_tiny_multimae as _save_tiny

VIDEO = Modality("video", "video", (8, 48, 48, 3), (2, 8, 8), (0.5,) * 3, (0.25,) * 3, "intensity")
AUDIO = Modality("audio", "spectrogram", (128, 96), (16, 16), (-5.0,), (3.0,), "log mel power")


@pytest.fixture(scope="module")
def rgbd_folder(tmp_path_factory):
    return str(_save_tiny(tmp_path_factory.mktemp("app") / "rgbd", [RGB, DEPTH]))


@pytest.fixture(scope="module")
def av_folder(tmp_path_factory):
    return str(_save_tiny(tmp_path_factory.mktemp("app") / "av", [VIDEO, AUDIO], task="audio-visual"))


def _png(arr) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def _wav(samples, rate=44_100, channels=2) -> bytes:
    b = io.BytesIO()
    with wave.open(b, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat((samples * 32767).astype("<i2")[:, None], channels, 1).tobytes())
    return b.getvalue()


def test_budgets_presets_and_dirichlet_are_served_from_the_cache(rgbd_folder, monkeypatch):
    app = MultiMAEApp(rgbd_folder, "room:10000001", budgets={"rgb": 1.0, "depth": 0.0}, device="cpu")
    assert app.result.counts == {"rgb": 16, "depth": 0} and "depth" in app.table.value
    calls = []
    real = MA.reconstruct_multimodal
    monkeypatch.setattr(MA, "reconstruct_multimodal", lambda *a, **k: calls.append(k) or real(*a, **k))
    before = app.fig.data[4 * 1 + 2].source  # the depth reconstruction
    app._sliders["depth"].value = 0.25
    assert app.result.counts == {"rgb": 16, "depth": 4} and len(calls) == 1
    assert app.fig.data[4 * 1 + 2].source != before
    app.set_budgets({"rgb": 1.0, "depth": 0.0})
    assert len(calls) == 1 and app.result.counts["depth"] == 0  # back to a cached result
    preset = next(b for b in app.presets.children if b.description == "RGB from depth")
    preset.click()
    assert app.result.counts == {"rgb": 0, "depth": 16} and len(calls) == 2
    app.total.value = 10
    app.dirichlet_btn.click()
    assert sum(app.result.counts.values()) == 10 and "Dirichlet" in app.status.value
    assert [round(s.value * 16) for s in app._sliders.values()] == list(app.result.counts.values())
    assert len(calls) == 3  # showing the drawn split on the sliders did not recompute
    app.seed.value = 1
    assert app.result.seed == 1


def test_table_marks_the_best_of_model_and_baselines(rgbd_folder):
    app = MultiMAEApp(rgbd_folder, "room:10000004", budgets={"rgb": 0.5, "depth": 0.5}, device="cpu")
    d = app.result["depth"].metrics["absrel"]
    options = [d] + [m["depth"]["absrel"] for m in app.baselines.values() if "depth" in m]
    assert f"<b>{min(options):.3g}</b>" in app.table.value


def test_av_frame_moves_update_the_figure_in_place(av_folder, monkeypatch):
    app = MultiMAEApp(av_folder, "clip:10000002", budgets={"video": 0.25, "audio": 0.5}, device="cpu")
    assert app.time_box.layout.display != "none" and (app.frame.min, app.frame.max) == (1, 8)
    calls = []
    monkeypatch.setattr(MA, "reconstruct_multimodal", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(MA.MV, "multimodal_figure", lambda *a, **k: calls.append(2))
    src, audio_src = app.fig.data[0].source, app.fig.data[4].source
    app.frame.value = 6  # numbered from 1, as the title says
    assert not calls and app.fig.data[0].source != src and app.fig.data[4].source == audio_src
    assert "frame 6/8" in app.fig.layout.annotations[0].text and app.last_update_ms < 1000


def test_rgbd_uploads_depth_png_and_stereo_pair(rgbd_folder, tmp_path):
    app = MultiMAEApp(rgbd_folder, device="cpu")
    rng = np.random.default_rng(0)
    left = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    depth_mm = np.full((48, 64), 3000, np.uint16)
    depth_mm[:, 20:28] = 0  # invalid (inside the centre crop)
    app.set_rgbd(_png(left), _png(depth_mm))
    assert app.result is not None and np.isnan(app.inputs["depth"]).any()
    assert np.nanmax(app.inputs["depth"]) == pytest.approx(3.0)
    assert "millimetres" in app.status.value and "error" not in app.status.value.lower()
    right = np.roll(left, -4, axis=1)
    app.set_rgbd(_png(left), _png(right))
    assert "stereo pair" in app.status.value and "depth" in app.inputs
    app.set_rgbd(_png(left))  # RGB only: depth is predicted
    assert app.result.counts["depth"] == 0 and "depth" not in app.inputs


def test_av_uploads_video_and_wav(av_folder, tmp_path):
    from explorer.data.av_clips import make_av_clip

    c = make_av_clip(10_000_005)
    write_video(tmp_path / "c.avi", c.frames, fps=8)
    app = MultiMAEApp(av_folder, device="cpu")
    app.set_av(str(tmp_path / "c.avi"), _wav(c.audio[::1], rate=16_000))
    assert set(app.inputs) == {"video", "audio"} and "2 channels mixed down" in app.status.value
    diff = np.abs(app.inputs["audio"] - c.spectrogram)  # 16-bit rounding only (largest in the quietest bins)
    assert diff.max() < 0.2 and diff.mean() < 0.01
    app.set_av(str(tmp_path / "c.avi"))
    assert app.result.counts["audio"] == 0 and "predicts it from the video" in app.status.value
    app.set_av(_png((c.frames[0] * 255).astype(np.uint8)))  # a still image
    assert "still image" in app.status.value


def test_bad_uploads_and_models_are_explained_and_the_app_survives(rgbd_folder, av_folder, tmp_path):
    app = MultiMAEApp(rgbd_folder, device="cpu")
    good = app.result
    app.set_rgbd(_png(np.zeros((8, 8, 3), np.uint8))[:30])
    assert "⚠" in app.status.value and app.result is good
    app.set_rgbd(None, _png(np.zeros((8, 8), np.uint16)))
    assert "no valid depth" in app.status.value
    app._set_uploads()
    assert "Upload a file first" in app.status.value
    av = MultiMAEApp(av_folder, device="cpu")
    av.set_av(None, b"RIFF0000WAVEjunk")
    assert "WAV" in av.status.value and "⚠" in av.status.value
    av.set_av(b"not a video at all")
    assert "⚠" in av.status.value
    write_video(tmp_path / "one.avi", np.zeros((1, 16, 16, 3), np.float32))
    av.set_av(str(tmp_path / "one.avi"))
    assert "⚠" in av.status.value and "1 frame" in av.status.value
    bad = MultiMAEApp("mini-mae", device="cpu")
    assert "not a multimodal MAE" in bad.status.value and bad.adapter is None
    bad.model_dd.value = "EPFL-VILAB/multimae-b"
    bad.load_btn.click()
    assert "not in transformers" in bad.status.value


def test_export_and_reproduce_samples_and_uploads_byte_identically(rgbd_folder, av_folder, tmp_path):
    from explorer.export import reproduce

    app = MultiMAEApp(rgbd_folder, "room:10000001", budgets={"rgb": 1.0, "depth": 0.25}, device="cpu")
    app.export_panel.folder.value = str(tmp_path / "figs")
    app.export_panel.formats["pdf"].value = False
    res = app.export_panel.export()
    assert res is not None, app.export_panel.status.value
    opts = res.sidecar["recipe"]["options"]
    assert opts["sample"] == "room:10000001" and opts["budgets"] == {"rgb": 16, "depth": 4}
    assert res.sidecar["provenance"]["model"]["family"] == "multimodal"
    assert reproduce(res.files["json"]).identical
    app.total.value = 12
    app.dirichlet_btn.click()
    res2 = app.export_panel.export()
    assert res2.sidecar["recipe"]["options"]["total"] == 12 and reproduce(res2.files["json"]).identical
    assert res2.files["png"] != res.files["png"]  # never overwritten silently
    rng = np.random.default_rng(1)
    app.set_rgbd(_png((rng.random((40, 40, 3)) * 255).astype(np.uint8)), _png(np.full((40, 40), 2500, np.uint16)))
    res3 = app.export_panel.export()
    stored = tmp_path / "figs" / res3.sidecar["recipe"]["options"]["arrays"]
    assert stored.is_file() and reproduce(res3.files["json"]).identical
    stored.write_bytes(stored.read_bytes()[:-40])  # a damaged input file is refused, not silently used
    with pytest.raises(Exception, match="stored inputs"):
        reproduce(res3.files["json"], overwrite=True)
    av = MultiMAEApp(av_folder, "clip:10000002", budgets={"video": 0.5, "audio": 0.25}, device="cpu")
    av.frame.value = 5  # the fifth frame on screen is index 4 in the recipe
    av.export_panel.folder.value = str(tmp_path / "figs")
    res4 = av.export_panel.export()
    assert res4.sidecar["recipe"]["options"]["frame"] == 4 and reproduce(res4.files["json"]).identical


def test_app_export_refused_without_overwrite_stores_no_arrays(rgbd_folder, tmp_path):
    """Uploaded inputs go to the export as arrays; a refused export (typed name exists, overwrite off) stores none."""
    app = MultiMAEApp(rgbd_folder, device="cpu")
    panel = app.export_panel
    figs = tmp_path / "figs"
    panel.folder.value, panel.name.value = str(figs), "upload"
    panel.formats["pdf"].value = panel.formats["svg"].value = False
    rng = np.random.default_rng(4)
    app.set_rgbd(_png((rng.random((40, 40, 3)) * 255).astype(np.uint8)), _png(np.full((40, 40), 2500, np.uint16)))
    assert not (figs / "inputs").exists()  # using an upload stores nothing
    first = panel.export()
    assert first is not None, panel.status.value
    stored = sorted((figs / "inputs").iterdir())
    assert [p.suffix for p in stored] == [".npz"]
    app.set_rgbd(_png((rng.random((40, 40, 3)) * 255).astype(np.uint8)))
    assert panel.export() is None and "not overwritten" in panel.status.value
    assert sorted((figs / "inputs").iterdir()) == stored
    panel.overwrite.value = True
    assert panel.export() is not None, panel.status.value
    assert len(list((figs / "inputs").iterdir())) == 2


def test_files_become_inputs_outside_the_app(tmp_path):
    """explorer.multimodal.inputs decides stereo right view vs depth map and video vs still from the files alone."""
    from explorer.multimodal.inputs import av_from_files, prepare_files, rgbd_from_files

    rng = np.random.default_rng(0)
    left = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    stereo = rgbd_from_files(_png(left), _png(np.roll(left, -4, axis=1)), size=16)
    assert "stereo pair" in " ".join(stereo.notes) and stereo.arrays["depth"].shape == (16, 16)
    depth = rgbd_from_files(_png(left), _png(np.full((48, 64), 2000, np.uint16)), size=16)
    assert "stereo" not in " ".join(depth.notes) and np.nanmax(depth.arrays["depth"]) == pytest.approx(2.0)
    assert depth.key.startswith("upload:") and depth.key.count(":") == 2 and depth.key != stereo.key
    with pytest.raises(MultiModalInputError, match="right stereo image needs the left"):
        rgbd_from_files(None, _png(left), size=16)
    still = av_from_files(_png(left))
    assert still.arrays["video"].shape[0] == 8 and "still image" in " ".join(still.notes) and "audio" not in still.arrays
    write_video(tmp_path / "c.avi", rng.random((16, 32, 32, 3)).astype(np.float32), fps=8)
    clip = prepare_files("audio-visual", str(tmp_path / "c.avi"))
    assert "still image" not in " ".join(clip.notes) and clip.arrays["video"].shape == (8, 48, 48, 3)
    with pytest.raises(MultiModalInputError, match="Upload a file first"):
        prepare_files("rgbd")
