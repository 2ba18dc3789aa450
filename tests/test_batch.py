"""Batch export CLI: a folder with a corrupt file, resume, refusal to overwrite other settings,
tiles equal to transformers' own forward; output folders that never collide, mix between runs or go stale."""

from __future__ import annotations

import hashlib
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
           "--device", "cpu", "--quiet", "--rows", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 1, run.stderr  # one input failed
    assert "3 exported" in run.stdout and "FAILED" in run.stdout and "corrupt.png" in run.stdout
    fig = tmp_path / "out" / "img1_png" / "reconstruction_r75.json"
    sc = json.loads(fig.read_text())
    assert sc["provenance"]["batched"] is True
    assert sc["style"]["rows"] == 2  # --rows: the five panels in two rows (reproduce reads it back)
    assert (tmp_path / "out" / "img1_png" / "grid.png").is_file()
    att = json.loads((tmp_path / "out" / "img1_png" / "attention.json").read_text())
    assert att["recipe"]["name"] == "attention_grid"
    # A sidecar's own paths are read only inside its folder: the batch's inputs folder is named on the user's word.
    in_dir = ["--input-dir", str(tmp_path / "in")]
    rep_att = subprocess.run([sys.executable, "-m", "explorer", "reproduce", str(tmp_path / "out" / "img1_png" / "attention.json"),
                              *in_dir],
                             capture_output=True, text=True, env=env, timeout=600)
    assert rep_att.returncode == 0 and "byte-identical" in rep_att.stdout, rep_att.stdout + rep_att.stderr
    rep = subprocess.run([sys.executable, "-m", "explorer", "reproduce", str(fig), *in_dir], capture_output=True, text=True,
                         env=env, timeout=600)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert "png" in rep.stdout and ("identical" in rep.stdout or "within rounding" in rep.stdout)


def test_batch_rows_must_be_auto_or_a_count(tmp_path, tiny):
    for bad in (0, -1, 1.5, "two", True):
        with pytest.raises(ValueError, match="--rows"):
            run_batch(BatchConfig(model=str(tiny), inputs=str(tmp_path), out=str(tmp_path / "o"), views=("reconstruction",),
                                  rows=bad), progress=False)
    run = subprocess.run([sys.executable, "-m", "explorer", "export", "--model", "x", "--inputs", ".", "--out", "o",
                          "--rows", "0"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "whole number of rows" in run.stderr


def test_batch_rejects_bad_arguments(tmp_path, tiny):
    with pytest.raises(FileNotFoundError):
        run_batch(BatchConfig(model=str(tiny), inputs=str(tmp_path / "missing"), out=str(tmp_path / "o")), progress=False)
    (tmp_path / "in").mkdir()
    with pytest.raises(ValueError, match="ratios"):
        run_batch(BatchConfig(model=str(tiny), inputs=str(tmp_path / "in"), out=str(tmp_path / "o"), ratios=(1.5,)), progress=False)
    with pytest.raises(ValueError, match="both write r75"):
        run_batch(BatchConfig(model=str(tiny), inputs=str(tmp_path / "in"), out=str(tmp_path / "o"), ratios=(0.75, 0.751)),
                  progress=False)
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


# --------------------------------------------------------------------------- outputs never collide, mix or go stale
def _image(path: Path, seed: int, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), (random_image(size, seed=seed)[:, :, ::-1] * 255).astype(np.uint8))
    return path


def _cfg(tiny, inputs, out, **kw) -> BatchConfig:
    return BatchConfig(**{**dict(model=str(tiny), inputs=str(inputs), out=str(out), ratios=(0.5,), views=("tiles",),
                                 batch_size=4, device="cpu", workers=2), **kw})


def _quiet(cfg, **kw):
    return run_batch(cfg, progress=False, log=lambda *_: None, **kw)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_inputs_whose_names_clean_alike_get_folders_of_their_own(tmp_path, tiny, monkeypatch):
    """a.b.png / a_b.png and sub/x.png / sub__x.png used to share a folder: one silently overwrote the other."""
    import explorer.export.batch as batch

    inputs = [_image(tmp_path / "in" / rel, seed) for seed, rel in enumerate(["a.b.png", "a_b.png", "sub/x.png", "sub__x.png"])]
    s = _quiet(_cfg(tiny, tmp_path / "in", tmp_path / "out", recursive=True))
    assert sorted(s.done) == sorted(map(str, inputs)) and not s.failed
    folders = {p.parent for p in (tmp_path / "out").glob("*/done.json")}
    assert len(folders) == 4
    for folder in folders:  # each folder holds the export of the file its record names
        rec = json.loads((folder / "done.json").read_text())
        assert rec["input"]["sha256"] == hashlib.sha256(Path(rec["input"]["path"]).read_bytes()).hexdigest()
    # Plain names stay readable; the ambiguous ones get a hash of their relative path.
    assert {f.name for f in folders} >= {"a_b_png", "sub__x_png"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(summary["folders"].values()) == sorted(f.name for f in folders)

    # Two inputs still meeting in one folder (forced here) are reported, not written over each other.
    monkeypatch.setattr(batch, "output_name", lambda path, root: "same")
    s2 = _quiet(_cfg(tiny, tmp_path / "in", tmp_path / "out2", recursive=True))
    assert len(s2.done) == 1 and len(s2.failed) == 3
    assert all("already that of" in e for e in s2.failed.values())


def test_a_second_run_into_a_locked_out_folder_fails_clearly(tmp_path, tiny):
    """Two runs into one --out both reported success and left folders mixed between their settings."""
    from explorer.export.lock import LOCK_NAME, OutputLock, OutputLocked

    _image(tmp_path / "in" / "img.png", 0)
    out = tmp_path / "out"
    with OutputLock(out):
        with pytest.raises(OutputLocked, match=f"pid {os.getpid()}"):
            _quiet(_cfg(tiny, tmp_path / "in", out))
        run = subprocess.run([sys.executable, "-m", "explorer", "export", "--model", str(tiny), "--inputs", str(tmp_path / "in"),
                              "--out", str(out), "--ratios", "0.5", "--views", "tiles", "--device", "cpu", "--quiet"],
                             capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
        assert run.returncode == 2, run.stdout + run.stderr
        assert "being written by another export" in run.stderr and f"pid {os.getpid()}" in run.stderr
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    assert not (out / LOCK_NAME).exists()

    # A lock left by a killed run is taken over, with a note; the lock is gone when the run ends.
    (out / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "started": "earlier"}))
    s = _quiet(_cfg(tiny, tmp_path / "in", out))
    assert len(s.done) == 1 and any("Took over the lock" in n for n in s.notes), s.notes
    assert not (out / LOCK_NAME).exists()


def test_overwrite_leaves_only_what_the_new_settings_write(tmp_path, tiny, monkeypatch):
    """--overwrite with other ratios left the old tiles beside the new ones; a user's own files stay."""
    import explorer.export.batch as batch

    _image(tmp_path / "in" / "img.png", 0)
    folder = tmp_path / "out" / "img_png"
    _quiet(_cfg(tiny, tmp_path / "in", tmp_path / "out", ratios=(0.5, 0.75)))
    (folder / "my_notes.txt").write_text("mine")
    s = _quiet(_cfg(tiny, tmp_path / "in", tmp_path / "out", ratios=(0.9,), overwrite=True))
    assert len(s.done) == 1
    new = {"original.png", "r90_masked.png", "r90_reconstruction.png", "r90_pasted.png", "done.json"}
    assert {p.name for p in folder.iterdir()} == new | {"my_notes.txt"}

    # An overwrite stopped half-way (here: the third tile fails), then resumed: no tile of either old run stays,
    # nor the temporary file a killed writer left.
    real_png, calls = batch._png, []

    def failing_png(image):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_png(image)

    monkeypatch.setattr(batch, "_png", failing_png)
    s = _quiet(_cfg(tiny, tmp_path / "in", tmp_path / "out", ratios=(0.25, 0.5), overwrite=True))
    assert "disk full" in s.failed[str(tmp_path / "in" / "img.png")] and not (folder / "done.json").exists()
    monkeypatch.setattr(batch, "_png", real_png)
    (folder / f".r25_pasted.png.part-{_dead_pid()}-0123abcd").write_bytes(b"half")
    s = _quiet(_cfg(tiny, tmp_path / "in", tmp_path / "out", ratios=(0.1,)))  # no record: not refused
    assert len(s.done) == 1 and any("temporary" in n for n in s.notes)
    assert {p.name for p in folder.iterdir()} == {"original.png", "r10_masked.png", "r10_reconstruction.png",
                                                  "r10_pasted.png", "done.json", "my_notes.txt"}

    # A run killed half-way leaves no record in the folder it did not finish; its lock, taken over by the next run,
    # names what it may have left there.  Here the state a kill leaves: an overwrite with ratio 0.33 had removed
    # the r10 tiles and the record and written original.png and r33_masked.png.
    from explorer.export.lock import LOCK_NAME

    for p in folder.glob("r10_*.png"):
        p.unlink()
    (folder / "done.json").unlink()
    (folder / "r33_masked.png").write_bytes(b"from the killed run")
    (tmp_path / "out" / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "files": ["original.png", "r33_masked.png"]}))
    s = _quiet(_cfg(tiny, tmp_path / "in", tmp_path / "out", ratios=(0.2,)))
    assert len(s.done) == 1 and any("Took over" in n for n in s.notes)
    assert {p.name for p in folder.iterdir()} == {"original.png", "r20_masked.png", "r20_reconstruction.png",
                                                  "r20_pasted.png", "done.json", "my_notes.txt"}


def test_a_replaced_input_is_exported_again(tmp_path, tiny):
    """An input replaced by another image of the same name was skipped as done, its old tiles kept."""
    a, b = _image(tmp_path / "in" / "a.png", 0), _image(tmp_path / "in" / "b.png", 1)
    cfg = _cfg(tiny, tmp_path / "in", tmp_path / "out")
    _quiet(cfg)
    old = (tmp_path / "out" / "a_png" / "original.png").read_bytes()
    _image(a, 5)
    s = _quiet(cfg)
    assert s.done == [str(a)] and s.replaced == [str(a)] and s.skipped == [str(b)]
    assert (tmp_path / "out" / "a_png" / "original.png").read_bytes() != old
    assert _quiet(cfg).skipped == [str(a), str(b)]  # and now it is done

    # Another folder's a.png (other content) into the same --out: refused, not taken for a replacement.
    _image(tmp_path / "in2" / "a.png", 7)
    s = _quiet(_cfg(tiny, tmp_path / "in2", tmp_path / "out"))
    assert not s.done and "export of another file" in s.failed[str(tmp_path / "in2" / "a.png")]


def test_an_out_folder_inside_the_inputs_is_not_read_back(tmp_path, tiny):
    """--out inside --inputs with --recursive re-exported its own tiles on the next run (44 -> 210 folders)."""
    inputs = [_image(tmp_path / "in" / "a.png", 0), _image(tmp_path / "in" / "sub" / "b.png", 1)]
    cfg = _cfg(tiny, tmp_path / "in", tmp_path / "in" / "out", recursive=True)
    assert len(_quiet(cfg).done) == 2
    (tmp_path / "in" / "out" / f".summary.json.part-{_dead_pid()}-0123abcd").write_bytes(b"half")
    s = _quiet(cfg)
    assert s.skipped == [str(p) for p in inputs] and not s.done and not s.failed
    assert not list((tmp_path / "in" / "out").glob(".*.part-*"))
    # An earlier output folder, moved or renamed, is known by its records too.
    (tmp_path / "in" / "out").rename(tmp_path / "in" / "old results")
    s = _quiet(_cfg(tiny, tmp_path / "in", tmp_path / "new", recursive=True))
    assert sorted(s.done) == [str(p) for p in inputs]
