"""explorer analyze: rows equal the interactive API's numbers, resume, corrupt inputs, Ray vs in-process, the CLI.

Ray is started once for the module (2 CPUs); the runs reuse it.  Inputs are a few generated images in an
ImageFolder layout plus one corrupt file.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from skimage.metrics import structural_similarity

import explorer
from explorer import analyze
from explorer.analyze import AnalyzeError
from explorer.metrics import upsample_mask

OPTS = {"ratios": [0.5, 0.75], "strategies": ["random", "block"], "seed": 3}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze_in")
    rng = np.random.default_rng(0)
    for c in ("cats", "dogs"):
        (root / c).mkdir()
        for i in range(2):
            small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            cv2.imwrite(str(root / c / f"{i}.png"), cv2.resize(small, (140, 120), interpolation=cv2.INTER_CUBIC))
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return root


@pytest.fixture(scope="module")
def model():
    return explorer.load_model("mini-mae")


@pytest.fixture(scope="module")
def inproc(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze_out") / "sweep.parquet"
    s = analyze.run(folder, "mini-mae", "mae-sweep", out, options=OPTS, in_process=True, progress=False, log=lambda *_: None)
    return s, pq.read_table(out)


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    from explorer.analyze.pipeline import start_ray

    started = start_ray(2, None)
    yield
    if started:
        ray.shutdown()


def _good(t):
    return t.to_pandas().query("error.isnull()")


def test_mae_sweep_rows_equal_interactive_api(inproc, folder, model):
    s, t = inproc
    df = _good(t)
    assert s.inputs == 5 and s.processed == 5 and s.errors == 1
    assert len(df) == 4 * 2 * 2 and set(df.label) == {"cats", "dogs"}
    for path, rows in df.groupby("path"):
        for strategy in OPTS["strategies"]:
            sweep = explorer.reconstruct_sweep(model, path, seed=3, strategy=strategy, ratios=OPTS["ratios"])
            mine = rows[rows.strategy == strategy].sort_values("ratio")
            np.testing.assert_array_equal(mine.psnr_masked.to_numpy(), sweep.psnr_curve)
            np.testing.assert_array_equal(mine.hidden_fraction.to_numpy(), [r.hidden_fraction for r in sweep.results])
            # SSIM: scikit-image's full map on the prediction, averaged over the hidden pixels (independent of our code)
            ref = []
            for r in sweep.results:
                _, smap = structural_similarity(r.prediction.astype(np.float64), r.image.astype(np.float64),
                                                data_range=1.0, channel_axis=2, full=True)
                ref.append(smap[upsample_mask(r.mask, r.patch_size)].mean())
            np.testing.assert_allclose(mine.ssim_masked.to_numpy(), ref, rtol=1e-12)
        assert rows.input_sha256.iloc[0] == explorer.load_image(path).sha256


def test_heads_rows_equal_attention_maps(folder, model, tmp_path):
    out = tmp_path / "heads.parquet"
    paths = sorted(str(p) for p in folder.rglob("0.png"))
    analyze.run(paths, "mini-mae", "heads", out, in_process=True, progress=False, log=lambda *_: None)
    df = pq.read_table(out).to_pandas()
    for path in paths:
        maps = explorer.attention_maps(model, path)
        rows = df[df.path == path].sort_values(["layer", "head"])
        L, H = maps.num_layers, maps.num_heads
        assert len(rows) == L * H
        np.testing.assert_allclose(rows.distance_px.to_numpy().reshape(L, H), maps.head_distance(), rtol=1e-12)
        np.testing.assert_allclose(rows.entropy_nats.to_numpy().reshape(L, H), maps.head_entropy(), rtol=1e-12)


def test_corrupt_input_is_a_row_with_its_error(inproc):
    s, t = inproc
    bad = t.to_pandas().query("path.str.endswith('broken.png')")
    assert len(bad) == 1 and bad.error.iloc[0] and np.isnan(bad.psnr_masked.iloc[0])
    assert "broken.png" not in " ".join(_good(t).path)


def test_metadata_has_settings_and_versions(inproc):
    s, _ = inproc
    md = analyze.read_metadata(s.out)
    assert md["settings"]["options"] == {**OPTS, "ratios": [0.5, 0.75]} and md["settings"]["model_id"] == "mini-mae"
    assert md["versions"]["explorer"] == explorer.__version__ and "torch" in md["versions"]


def test_resume_skips_exactly_finished_inputs(inproc, folder, tmp_path, monkeypatch):
    _, full = inproc
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    out = tmp_path / "r.parquet"
    first = analyze.run(paths[:2], "mini-mae", "mae-sweep", out, options=OPTS, in_process=True, progress=False,
                        log=lambda *_: None)
    assert first.processed == 2
    # an interrupted run: the second block raises; no out is replaced, the first block's part stays
    from explorer.analyze import stages

    calls = {"n": 0}
    real = stages.ModelStage.__call__

    def flaky(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(stages.ModelStage, "__call__", flaky)
    before = out.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        analyze.run(paths, "mini-mae", "mae-sweep", out, options=OPTS, in_process=True, progress=False, batch_size=1,
                    log=lambda *_: None)
    assert out.read_bytes() == before
    assert len(list((tmp_path / ".r.parquet.parts").glob("part-*.parquet"))) == 1
    monkeypatch.setattr(stages.ModelStage, "__call__", real)
    said = []
    s = analyze.run(folder, "mini-mae", "mae-sweep", out, options=OPTS, in_process=True, progress=False, log=said.append)
    # 2 from the first run + 1 from the interrupted run's part; the broken input is retried
    assert s.skipped == 3 and s.processed == 2 and "skipping 3 of 5" in said[0]
    assert not (tmp_path / ".r.parquet.parts").exists()
    # the first run's inputs came as a list (no ImageFolder labels): every other column is the uninterrupted run's
    got = pq.read_table(out)
    assert got.drop(["label"]).equals(full.drop(["label"]))


def test_other_settings_are_refused_not_overwritten(inproc, tmp_path):
    s, _ = inproc
    out = tmp_path / "x.parquet"
    out.write_bytes(open(s.out, "rb").read())
    with pytest.raises(AnalyzeError, match="other settings"):
        analyze.run([s.out], "mini-mae", "mae-sweep", out, options={**OPTS, "seed": 4}, in_process=True, progress=False)
    with pytest.raises(AnalyzeError, match="no option"):
        analyze.run([s.out], "mini-mae", "mae-sweep", out, options={"ratio": 0.5}, in_process=True)
    with pytest.raises(AnalyzeError, match="parquet"):
        analyze.run([s.out], "mini-mae", "mae-sweep", tmp_path / "x.csv", in_process=True)
    with pytest.raises(AnalyzeError, match="No inputs"):
        analyze.run(str(tmp_path / "*.jpg"), "mini-mae", "mae-sweep", tmp_path / "y.parquet", in_process=True)


def test_ray_two_workers_equal_one_worker_and_in_process(ray_session, inproc, folder, tmp_path):
    _, ref = inproc
    tables = []
    for w in (1, 2):
        out = tmp_path / f"ray{w}.parquet"
        s = analyze.run(folder, "mini-mae", "mae-sweep", out, options=OPTS, workers=w, batch_size=2, progress=False,
                        log=lambda *_: None)
        assert s.processed == 5 and s.errors == 1 and s.engine.startswith("ray")
        assert "ray" in analyze.read_metadata(out)["versions"]
        tables.append(pq.read_table(out))
    assert tables[0].equals(tables[1])
    assert tables[1].equals(ref)


def test_cli_end_to_end(folder, tmp_path, capsys):
    from explorer.__main__ import main

    out = tmp_path / "cli.parquet"
    argv = [str(folder), "--model", "mini-mae", "--analysis", "mae-sweep", "--out", str(out), "--ratios", "0.5",
            "--strategies", "grid", "--in-process", "--quiet"]
    assert main(["analyze", *argv]) == 1  # one input failed: its row says why
    df = pq.read_table(out).to_pandas()
    assert len(df) == 5 and (df.strategy.dropna() == "grid").all() and df.error.notna().sum() == 1
    assert "4 skipped" not in capsys.readouterr().out
    assert main(["analyze", *argv]) == 1
    assert "skipping 4 of 5" in capsys.readouterr().out
    assert main(["analyze", *argv[:-4], "0.25", "--in-process", "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert json.loads(pq.read_schema(out).metadata[b"explorer.analyze"])["settings"]["options"]["strategies"] == ["grid"]
