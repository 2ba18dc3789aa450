"""Batch export CLI: a folder with a corrupt file, resume, refusal to overwrite other settings,
tiles equal to transformers' own forward."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from _tiny import random_image, save_tiny_mae

import explorer
from explorer.export.batch import BatchConfig, run_batch
from explorer.masking import mask_from_order, masking_order


def _write_inputs(folder: Path, size: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for i in range(3):
        p = folder / f"img{i}.png"
        cv2.imwrite(str(p), (random_image(size + 8 * i, seed=i)[:, :, ::-1] * 255).astype(np.uint8))
        paths.append(p)
    good = paths[0].read_bytes()
    (folder / "corrupt.png").write_bytes(good[: len(good) // 2])  # truncated PNG
    (folder / "readme.txt").write_text("not an image, ignored by suffix")
    return paths


@pytest.fixture()
def tiny(tmp_path):
    return save_tiny_mae(tmp_path / "tiny", seed=1)


def test_batch_exports_the_rest_and_reports_the_corrupt_file(tmp_path, tiny):
    _write_inputs(tmp_path / "in", 32)
    cfg = BatchConfig(model=str(tiny), inputs=str(tmp_path / "in"), out=str(tmp_path / "out"), ratios=(0.5, 0.75),
                      views=("tiles",), batch_size=2, device="cpu")
    s = run_batch(cfg, progress=False, log=lambda *_: None)
    assert sorted(Path(p).name for p in s.done) == ["img0.png", "img1.png", "img2.png"]
    assert list(s.failed) == [str(tmp_path / "in" / "corrupt.png")]
    assert "truncated" in s.failed[str(tmp_path / "in" / "corrupt.png")]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["failed"]) == [str(tmp_path / "in" / "corrupt.png")]
    assert not (tmp_path / "out" / "corrupt_png").exists()

    # Tiles equal transformers' own forward of the same mask (independent reference), to 1 grey level.
    model = explorer.load_model(str(tiny), device="cpu")
    pixels, _info = explorer.reconstruction.as_input(tmp_path / "in" / "img2.png", "center-crop", model.image_size)
    order = masking_order(model.grid, "random", 0)
    mask = mask_from_order(order, model.grid, 0.75)
    ref = np.clip(model.forward_hf(pixels, mask), 0, 1)
    tile = cv2.imread(str(tmp_path / "out" / "img2_png" / "r75_reconstruction.png"))[:, :, ::-1] / 255.0
    assert tile.shape == ref.shape
    assert np.abs(tile - ref).max() <= 1.01 / 255

    # Resume: a second run skips everything and rewrites nothing.
    stamp = (tmp_path / "out" / "img0_png" / "done.json").stat().st_mtime_ns
    s2 = run_batch(cfg, progress=False, log=lambda *_: None)
    assert len(s2.skipped) == 3 and not s2.done
    assert (tmp_path / "out" / "img0_png" / "done.json").stat().st_mtime_ns == stamp

    # Other settings into the same folder: refused per input unless --overwrite.
    cfg2 = BatchConfig(**{**cfg.__dict__, "ratios": (0.9,)})
    s3 = run_batch(cfg2, progress=False, log=lambda *_: None)
    assert not s3.done and all("other settings" in e for k, e in s3.failed.items() if "img" in k)
    s4 = run_batch(BatchConfig(**{**cfg2.__dict__, "overwrite": True}), progress=False, log=lambda *_: None)
    assert len(s4.done) == 3
    assert (tmp_path / "out" / "img0_png" / "r90_pasted.png").is_file()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="static export needs chromium")
def test_batch_cli_figures_with_sidecars_that_reproduce(tmp_path):
    _write_inputs(tmp_path / "in", 112)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "explorer", "export", "--model", "mini-mae", "--inputs", str(tmp_path / "in"),
           "--out", str(tmp_path / "out"), "--ratios", "0.75", "--views", "reconstruction", "grid", "attention", "--formats", "png",
           "--device", "cpu", "--quiet"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 1, run.stderr  # one input failed
    assert "3 exported" in run.stdout and "FAILED" in run.stdout and "corrupt.png" in run.stdout
    fig = tmp_path / "out" / "img1_png" / "reconstruction_r75.json"
    sc = json.loads(fig.read_text())
    assert sc["provenance"]["batched"] is True
    assert (tmp_path / "out" / "img1_png" / "grid.png").is_file()
    att = json.loads((tmp_path / "out" / "img1_png" / "attention.json").read_text())
    assert att["recipe"]["name"] == "attention_grid"
    rep_att = subprocess.run([sys.executable, "-m", "explorer", "reproduce", str(tmp_path / "out" / "img1_png" / "attention.json")],
                             capture_output=True, text=True, env=env, timeout=600)
    assert rep_att.returncode == 0 and "byte-identical" in rep_att.stdout, rep_att.stdout + rep_att.stderr
    rep = subprocess.run([sys.executable, "-m", "explorer", "reproduce", str(fig)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert "png" in rep.stdout and ("identical" in rep.stdout or "within rounding" in rep.stdout)


def test_batch_rejects_bad_arguments(tmp_path, tiny):
    with pytest.raises(FileNotFoundError):
        run_batch(BatchConfig(model=str(tiny), inputs=str(tmp_path / "missing"), out=str(tmp_path / "o")), progress=False)
    (tmp_path / "in").mkdir()
    with pytest.raises(ValueError, match="ratios"):
        run_batch(BatchConfig(model=str(tiny), inputs=str(tmp_path / "in"), out=str(tmp_path / "o"), ratios=(1.5,)), progress=False)
    with pytest.raises(ValueError, match="Unknown view"):
        run_batch(BatchConfig(model=str(tiny), inputs=str(tmp_path / "in"), out=str(tmp_path / "o"), views=("saliency",)),
                  progress=False)


def test_a_perfect_fill_is_recorded_not_refused(tmp_path, tiny):
    """A model that fills every hidden patch exactly has an infinite PSNR: the file is exported, the PSNR is null."""
    _write_inputs(tmp_path / "in", 32)
    adapter = explorer.load_model(str(tiny), device="cpu")
    adapter.forward_batch = lambda images, masks, batch_size=None: np.asarray(images, np.float32)  # the truth itself
    cfg = BatchConfig(model=str(tiny), inputs=str(tmp_path / "in"), out=str(tmp_path / "out"), ratios=(0.75,),
                      views=("tiles",), batch_size=2, device="cpu")
    s = run_batch(cfg, progress=False, log=lambda *_: None, adapter=adapter)
    assert len(s.done) == 3 and list(s.failed) == [str(tmp_path / "in" / "corrupt.png")]
    record = json.loads((tmp_path / "out" / "img0_png" / "done.json").read_text())
    assert record["psnr_masked_db"] == {"0.75": None}
