"""Property-based tests (hypothesis) for the pure functions with invariants: masks are exact and nested for any grid,
ratio and seed; patchify / unpatchify are inverses for any geometry and put each block where the grid says; an atomic
write that fails at any step leaves the old file or nothing, never a partial one."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from explorer import files as xfiles
from explorer.masking.budgets import visible_masks
from explorer.masking.image import mask_from_order, masking_order, num_masked
from explorer.masking.video import VIDEO_STRATEGIES, video_mask
from explorer.modalities import Modality

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
grids = st.tuples(st.integers(1, 16), st.integers(1, 16)).filter(lambda g: g[0] * g[1] >= 2)
seeds = st.integers(0, 2**31 - 1)
ratios = st.floats(0.0, 1.0, allow_nan=False)


@SETTINGS
@given(grid=grids, strategy=st.sampled_from(["random", "block", "grid"]), seed=seeds, r=st.tuples(ratios, ratios))
def test_image_masks_are_exact_and_nested(grid, strategy, seed, r):
    lo, hi = sorted(r)
    L = grid[0] * grid[1]
    order = masking_order(grid, strategy, seed)
    assert sorted(order.tolist()) == list(range(L))  # a permutation
    a, b = mask_from_order(order, grid, lo), mask_from_order(order, grid, hi)
    assert a.shape == grid and a.sum() == num_masked(L, lo) and b.sum() == num_masked(L, hi)
    assert not (a & ~b).any()  # hidden at the lower ratio → hidden at the higher one
    np.testing.assert_array_equal(masking_order(grid, strategy, seed), order)  # same seed, same order


@SETTINGS
@given(L=st.integers(2, 10_000), r=ratios)
def test_num_masked_rounds_and_keeps_both_sides(L, r):
    n = num_masked(L, r)
    if r == 0.0 or r == 1.0:
        assert n == round(r * L)
    else:
        assert 1 <= n <= L - 1
        assert abs(n - r * L) <= 0.5 + 1e-9 or n in (1, L - 1)


@SETTINGS
@given(grid=st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)).filter(lambda g: g[1] * g[2] >= 2),
       strategy=st.sampled_from(list(VIDEO_STRATEGIES)), seed=seeds, r=st.tuples(ratios, ratios))
def test_video_masks_are_exact_and_nested(grid, strategy, seed, r):
    lo, hi = sorted(r)
    t, gh, gw = grid
    a, b = video_mask(grid, lo, strategy, seed), video_mask(grid, hi, strategy, seed)
    assert a.shape == grid and not (a & ~b).any()
    if strategy == "tube":
        assert a.sum() == t * num_masked(gh * gw, lo)
        assert (a == a[:1]).all()  # every time step hides the same patches
    else:
        assert a.sum() == num_masked(t * gh * gw, lo) and b.sum() == num_masked(t * gh * gw, hi)


@SETTINGS
@given(seed=seeds, n=st.tuples(st.integers(0, 48), st.integers(0, 48)))
def test_visible_budgets_are_exact_and_nested(seed, n):
    spec = Modality("depth", "depth", (48, 64), (8, 8), (0.0,), (1.0,))
    lo, hi = sorted(n)
    a = visible_masks([spec], {"depth": lo}, seed)["depth"]
    b = visible_masks([spec], {"depth": hi}, seed)["depth"]
    assert a.sum() == lo and b.sum() == hi and not (a & ~b).any()


@st.composite
def modality_and_array(draw):
    kind = draw(st.sampled_from(["image", "depth", "video", "spectrogram"]))
    if kind == "video":
        patch = (draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        grid = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        shape = tuple(g * p for g, p in zip(grid, patch)) + (3,)
    else:
        patch = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
        grid = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
        shape = tuple(g * p for g, p in zip(grid, patch)) + ((3,) if kind == "image" else ())
    ch = shape[-1] if len(shape) > len(patch) else 1
    spec = Modality(kind, kind, shape, patch, (0.0,) * ch, (1.0,) * ch)
    x = torch.from_numpy(np.random.default_rng(draw(seeds)).standard_normal((2, *shape)).astype(np.float32))
    return spec, x


@SETTINGS
@given(case=modality_and_array())
def test_patchify_unpatchify_are_inverse_and_follow_the_grid(case):
    spec, x = case
    tok = spec.patchify(x)
    assert tuple(tok.shape) == (2, spec.num_patches, spec.patch_dim)
    torch.testing.assert_close(spec.unpatchify(tok), x, rtol=0, atol=0)
    # token i holds exactly the block at grid position unravel(i): checked by slicing, independently
    i = spec.num_patches - 1 if spec.num_patches > 1 else 0
    pos = np.unravel_index(i, spec.grid)
    block = x[1][tuple(slice(g * p, (g + 1) * p) for g, p in zip(pos, spec.patch))]
    np.testing.assert_array_equal(np.sort(tok[1, i].numpy()), np.sort(block.reshape(-1).numpy()))
    # the mask spread agrees with the patch layout
    flags = np.zeros(spec.num_patches, bool)
    flags[i] = True
    m = spec.unpatchify_mask(flags)
    assert m.shape == spec.shape and m.sum() == spec.patch_dim
    assert m[tuple(slice(g * p, (g + 1) * p) for g, p in zip(pos, spec.patch))].all()


FAIL_AT = ["write", "fsync", "link", "replace"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=4096), old=st.one_of(st.none(), st.binary(min_size=1, max_size=64)),
       overwrite=st.booleans(), fail=st.one_of(st.none(), st.sampled_from(FAIL_AT)))
def test_atomic_write_leaves_the_old_file_or_the_new_one_never_a_part(tmp_path_factory, data, old, overwrite, fail):
    folder = tmp_path_factory.mktemp("aw")
    target = folder / "fig.png"
    if old is not None:
        target.write_bytes(old)
    real = {"fsync": os.fsync, "link": os.link, "replace": os.replace, "fdopen": os.fdopen}

    def boom(*a, **k):
        raise OSError(errno.EIO, "injected failure")

    patches = {}
    if fail == "fsync":
        patches["fsync"] = boom
    elif fail == "link":
        patches["link"] = boom
    elif fail == "replace":
        patches["replace"] = boom
    elif fail == "write":
        class Half:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, b):
                self.f.write(b[: len(b) // 2])
                raise OSError(errno.ENOSPC, "disk full (injected)")

        patches["fdopen"] = lambda fd, mode: Half(real["fdopen"](fd, mode))
    for k, v in patches.items():
        setattr(os, k, v)
    try:
        raised = None
        try:
            xfiles.write_atomic(target, data, overwrite=overwrite)
        except (OSError, FileExistsError) as e:
            raised = e
    finally:
        for k in patches:
            setattr(os, k, real[k])
    leftovers = [p.name for p in folder.iterdir() if p.name != "fig.png"]
    assert leftovers == [], leftovers
    if raised is None:
        assert target.read_bytes() == data
        assert old is None or overwrite
    else:
        assert target.read_bytes() == old if old is not None else not target.exists()
        if old is not None and not overwrite and fail is None:
            assert isinstance(raised, FileExistsError)


# ---------------------------------------------------------------------------------------------- header sizes
def _encode(fmt: str, w: int, h: int, seed: int) -> bytes:
    import io as _io

    import cv2
    from PIL import Image

    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = _io.BytesIO()
    if fmt == "hdr":
        ok, enc = cv2.imencode(".hdr", rgb.astype(np.float32) / 255)
        assert ok
        return enc.tobytes()
    if fmt == "pnm-ascii":
        return (f"P2\n# a comment\n{w} {h}\n255\n" + " ".join(map(str, rgb[..., 0].ravel()))).encode()
    im = Image.fromarray(rgb)
    kw = {}
    if fmt == "jpeg-progressive":
        fmt, kw = "jpeg", {"progressive": True}
    elif fmt == "webp-lossless":
        fmt, kw = "webp", {"lossless": True}
    elif fmt == "webp-alpha":
        fmt, im = "webp", Image.fromarray(np.dstack([rgb, rgb[..., :1]]))
    elif fmt == "tiff-big":
        fmt, kw = "tiff", {"big_tiff": True}
    elif fmt in ("pgm", "pbm"):
        im, fmt = im.convert("L" if fmt == "pgm" else "1"), "ppm"
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


HEADER_FORMATS = ["png", "jpeg", "jpeg-progressive", "tiff", "tiff-big", "webp", "webp-lossless", "webp-alpha", "gif",
                  "bmp", "ppm", "pgm", "pbm", "pnm-ascii", "hdr"]


@settings(max_examples=80, deadline=None)
@given(fmt=st.sampled_from(HEADER_FORMATS), w=st.integers(1, 300), h=st.integers(1, 300), seed=seeds)
def test_header_sizes_are_read_without_decoding(fmt, w, h, seed):
    """The decompression-bomb guard reads (width, height) from the header of every format it knows; a reader that
    swapped them or read the wrong bytes would disagree with the size the image was made at."""
    from explorer.io import header_size, image_size

    assume(not (fmt.startswith("webp") and (w > 16383 or h > 16383)))
    data = _encode(fmt, w, h, seed)
    assert image_size(data) == (w, h), fmt
    assert header_size(data) == (w, h), fmt
