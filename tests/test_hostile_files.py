"""Hostile files: every loader refuses them with its own clear error, within bounded memory and time.

A corpus of files that lie (headers claiming tens of thousands of pixels a side, damaged checksums, huge frame
counts, impossible sample rates, damaged weights) is generated in a temporary folder; it is small on disk.  Each loader
family runs its cases in one subprocess whose address space may grow by at most :data:`LIMIT` after the imports
(``RLIMIT_AS``), with the peak resident memory of each case measured on its own (``/proc/self/clear_refs`` resets the
high-water mark) and limits on each case's CPU time (the loader's own work, whatever else runs on the machine) and
wall-clock time (a case that hangs).  Each case ends as the loader's own error with a message that says why, or
loads (normal inputs, and large-but-accepted ones), never as a ``MemoryError``, a raw OpenCV / SciPy / safetensors
error or a killed process.  A case that takes the process down is named: the worker prints each case before it runs.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GiB = 1 << 30
LIMIT = int(1.5 * GiB)  # address space a case may add; also its bound on peak resident memory
SECONDS = 10.0  # CPU seconds per case (the loader's own work, whatever else runs on the machine)
WALL = 3 * SECONDS  # wall-clock seconds per case: only catches a case that hangs


# ---------------------------------------------------------------------------------------------- building the corpus
def _chunk(kind: bytes, body: bytes, *, bad_crc: bool = False) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc ^ (0xDEADBEEF if bad_crc else 0))


def _zeros_zlib(n: int, block: int) -> bytes:
    """A valid zlib stream of ``n`` zero bytes (``block`` divides ``n``), built from one compressed block repeated:
    a 5 GB image costs milliseconds to write and a few megabytes on disk, as a real bomb would."""
    assert n % block == 0
    c = zlib.compressobj(9)
    zero = bytes(block)
    first = c.compress(zero) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(zero) + c.flush(zlib.Z_FULL_FLUSH)  # identical after a full flush (no shared history)
    tail = c.flush()[:-4]  # the final empty block; the Adler-32 of n zeros is written below
    adler = ((n % 65521) << 16) | 1
    return first + again * (n // block - 1) + tail + struct.pack(">I", adler)


def png_bomb(w: int, h: int, *, bit_depth: int = 16, colour: int = 2, bad_text_crc: bool = False,
             bad_ihdr_crc: bool = False, truncate: bool = False) -> bytes:
    """A PNG of ``w`` x ``h`` zero pixels whose pixel data is real (it decodes to the full size).

    colour: PNG colour type (0 grey, 2 RGB, 6 RGBA); bad_text_crc: a tEXt chunk with a wrong checksum before the data
    (Pillow refuses to read the header; libpng only warns and decodes); truncate: the data cut short, no IEND.
    """
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = 1 + w * channels * bit_depth // 8
    rows_per_block = max(1, (1 << 21) // row)
    while h % rows_per_block:
        rows_per_block -= 1
    idat = _zeros_zlib(row * h, row * rows_per_block)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr, bad_crc=bad_ihdr_crc)
    if bad_text_crc:
        out += _chunk(b"tEXt", b"Comment\x00made to lie", bad_crc=True)
    if truncate:
        return out + _chunk(b"IDAT", idat)[: 8 + len(idat) // 3]
    return out + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _encode(ext: str, img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def jpeg_claiming(w: int, h: int) -> bytes:
    data = bytearray(_encode(".jpg", np.full((16, 16, 3), 128, np.uint8)))
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def tiff_claiming(w: int, h: int) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(b, "TIFF")
    data = bytearray(b.getvalue())
    off = struct.unpack("<I", data[4:8])[0]
    for k in range(struct.unpack("<H", data[off:off + 2])[0]):
        p = off + 2 + 12 * k
        tag = struct.unpack("<H", data[p:p + 2])[0]
        if tag in (256, 257):
            data[p + 2:p + 4] = struct.pack("<H", 4)  # LONG
            data[p + 4:p + 8] = struct.pack("<I", 1)
            data[p + 8:p + 12] = struct.pack("<I", w if tag == 256 else h)
    return bytes(data)


def webp_claiming(w: int, h: int) -> bytes:
    """A VP8X header whose canvas claims ``w`` x ``h`` (up to 2**24 a side), around a tiny real image."""
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(b, "WEBP", lossless=True)
    inner = b.getvalue()[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + inner
    return b"RIFF" + struct.pack("<I", len(body)) + body


def gif_claiming(w: int, h: int, *, in_frame: bool = False) -> bytes:
    """A one-frame GIF whose logical screen (or, ``in_frame``, whose only frame) claims ``w`` x ``h``; the frame's data
    is a 1-pixel LZW stream (clear, pixel 0, end)."""
    screen = (8, 8) if in_frame else (w, h)
    frame = (w, h) if in_frame else (8, 8)
    return (b"GIF89a" + struct.pack("<HHBBB", *screen, 0, 0, 0)
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, *frame, 0x80) + b"\x00\x00\x00\xff\xff\xff"  # 2-colour local table
            + b"\x02" + b"\x02\x44\x01\x00" + b"\x3b")


def bmp_claiming(w: int, h: int) -> bytes:
    data = bytearray(_encode(".bmp", np.zeros((8, 8, 3), np.uint8)))
    data[18:26] = struct.pack("<ii", w, h)
    return bytes(data)


def npy_claiming(shape) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": "<f8", "fortran_order": False, "shape": tuple(shape)})
    return b.getvalue() + bytes(4096)


def wav(rate: int = 16_000, channels: int = 1, width: int = 2, seconds: float = 0.5, *, declared_rate: int | None = None,
        declared_channels: int | None = None, declared_bytes: int | None = None) -> bytes:
    """A PCM WAV of silence; ``declared_*`` patch the header afterwards (a header that lies)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(int(rate * seconds) * channels * width))
    data = bytearray(buf.getvalue())
    fmt = data.index(b"fmt ") + 8
    if declared_channels is not None:
        data[fmt + 2:fmt + 4] = struct.pack("<H", declared_channels)
    if declared_rate is not None:
        data[fmt + 4:fmt + 8] = struct.pack("<I", declared_rate)
    if declared_bytes is not None:
        d = data.index(b"data") + 4
        data[d:d + 4] = struct.pack("<I", declared_bytes)
    return bytes(data)


def mjpg_avi(path: Path, w: int, h: int, n: int, fps: int = 8, *, frames: int | None = None,
             rate: tuple[int, int] | None = None, size: tuple[int, int] | None = None) -> Path:
    """An MJPG AVI of ``n`` flat-colour ``w`` x ``h`` frames, muxed here from a few JPEGs encoded once (a 64-frame
    8-megapixel clip takes milliseconds to write and a few megabytes on disk).

    ``frames``, ``rate`` (dwRate, dwScale) and ``size`` make the headers lie about the frame count, rate and size.
    """
    jpegs = [_encode(".jpg", np.full((h, w, 3), 40 + 50 * k, np.uint8)) for k in range(3)]
    fw, fh = size or (w, h)
    count = n if frames is None else frames
    dw_rate, dw_scale = rate or (fps, 1)

    def ck(fourcc: bytes, body: bytes) -> bytes:
        return fourcc + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) % 2)

    def lst(kind: bytes, body: bytes) -> bytes:
        return ck(b"LIST", kind + body)

    avih = struct.pack("<14I", int(1e6 * dw_scale / max(dw_rate, 1)) & 0xFFFFFFFF, 0, 0, 0x10, count, 0, 1, 0, fw, fh,
                       0, 0, 0, 0)
    strh = b"vidsMJPG" + struct.pack("<IHHIIIIIIIIhhhh", 0, 0, 0, 0, dw_scale, dw_rate, 0, count, 0, 0xFFFFFFFF, 0,
                                      0, 0, min(fw, 32767), min(fh, 32767))
    strf = struct.pack("<IiiHH4sIiiII", 40, fw, fh, 1, 24, b"MJPG", fw * fh * 3, 0, 0, 0, 0)
    hdrl = lst(b"hdrl", ck(b"avih", avih) + lst(b"strl", ck(b"strh", strh) + ck(b"strf", strf)))
    movi, index, offset = [], [], 4
    for i in range(n):
        c = ck(b"00dc", jpegs[i % len(jpegs)])
        index.append(b"00dc" + struct.pack("<III", 0x10, offset, len(jpegs[i % len(jpegs)])))
        movi.append(c)
        offset += len(c)
    body = b"AVI " + hdrl + lst(b"movi", b"".join(movi)) + ck(b"idx1", b"".join(index))
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def _corrupt_model(src: Path, dst: Path, how: str) -> Path:
    shutil.copytree(src, dst)
    w = dst / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes({"truncated": data[: len(data) // 2],
                   "garbage": bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
                   "huge-header": struct.pack("<Q", 1 << 62) + data[8:1024],
                   "bad-json": struct.pack("<Q", 16) + b"{not json at all" + data[24:]}[how])
    return dst


# ---------------------------------------------------------------------------------------------- the cases
#: (id, loader, args, kwargs, expected): expected is "ok" or (error class name, regex the message must match)
#: Cases that must peak lower than LIMIT: the largest image the default limit accepts stays under 1 GiB.
PEAK_LIMITS = {"png-40mp-rgba16-accepted": GiB}


def _corpus(d: Path) -> tuple[dict[str, list], dict[str, list]]:
    import cv2

    def put(name: str, data: bytes) -> str:
        (d / name).write_bytes(data)
        return str(d / name)

    too_big = r"megapixels|limit|pixels"
    cases: dict[str, list] = {"images": [], "depth": [], "video": [], "audio": [], "models": []}
    photo = str(Path(__import__("skimage").__file__).parent / "data" / "rocket.jpg")
    grey16 = put("grey16.png", _encode(".png", (np.arange(480 * 640, dtype=np.uint32).reshape(480, 640) % 65536).astype(np.uint16)))
    bombs = {
        "png-30k-rgb16-bad-text-crc": png_bomb(30_000, 30_000, bad_text_crc=True),
        "png-20k-rgb16-bad-text-crc": png_bomb(20_000, 20_000, bad_text_crc=True),
        "png-30k-bad-ihdr-crc": png_bomb(30_000, 30_000, colour=0, bad_ihdr_crc=True),
        "png-30k-truncated": png_bomb(30_000, 30_000, colour=0, truncate=True),
        "png-80mp-rgba16": png_bomb(10_000, 8_000, colour=6),
        "jpeg-sof-60k": jpeg_claiming(60_000, 60_000),
        "tiff-100k": tiff_claiming(100_000, 100_000),
        "webp-vp8x-16m": webp_claiming(1 << 24, 1 << 24),
        "webp-vp8x-20k": webp_claiming(20_000, 20_000),
        "gif-screen-65k": gif_claiming(65_535, 65_535),
        "gif-frame-65k": gif_claiming(65_535, 65_535, in_frame=True),
        "bmp-60k": bmp_claiming(60_000, 60_000),
        "bmp-60k-top-down": bmp_claiming(60_000, -60_000),
    }
    for name, data in bombs.items():
        p = put(name, data)
        cases["images"].append((name, "load_image", [p], {}, ("ImageLoadError", too_big)))
    p = put("png-40mp-rgba16", png_bomb(8_000, 5_000, colour=6))  # at the default limit: accepted, under 1 GB
    cases["images"] += [
        ("photo-rocket", "load_image", [photo], {}, "ok"),
        ("png-grey16", "load_image", [grey16], {}, "ok"),
        ("png-40mp-rgba16-accepted", "load_image", [p], {}, "ok"),
        ("rgbd-bomb-image", "rgbd_from_files", [str(d / "png-30k-rgb16-bad-text-crc")], {}, ("ImageLoadError", too_big)),
        ("rgbd-photo+grey16", "rgbd_from_files", [photo, grey16], {}, "ok"),
    ]
    # depth maps
    depth_bombs = {
        "depth-png-30k": png_bomb(30_000, 30_000, colour=0),
        "depth-png-20k-bad-text-crc": png_bomb(20_000, 20_000, colour=0, bad_text_crc=True),
        "depth-png-30k-truncated": png_bomb(30_000, 30_000, colour=0, truncate=True),
        "depth-tiff-100k": tiff_claiming(100_000, 100_000),
        "depth-npy-30k": npy_claiming((30_000, 30_000)),
    }
    for name, data in depth_bombs.items():
        p = put(name, data)
        cases["depth"].append((name, "load_depth", [p], {}, ("DepthLoadError", r"limit|truncated|pixels")))
    cases["depth"] += [
        ("depth-npy-small-truncated", "load_depth", [put("npy-trunc.npy", npy_claiming((3000, 3000)))], {},
         ("DepthLoadError", "truncated")),
        ("depth-grey16", "load_depth", [grey16], {}, "ok"),
        ("depth-png-6k-accepted", "load_depth", [put("depth6k.png", png_bomb(6_000, 6_000, colour=0))], {},
         ("DepthLoadError", "no valid depth")),  # decodes (36 MP, zeros): refused for its content, not its size
        ("rgbd-depth-bomb", "rgbd_from_files", [photo, str(d / "depth-png-30k")], {}, ("DepthLoadError", too_big)),
    ]
    # videos
    big = mjpg_avi(d / "big.avi", 3000, 3000, 40)
    eight = mjpg_avi(d / "8mp.avi", 3264, 2448, 64)
    small = mjpg_avi(d / "small.avi", 64, 48, 24)
    lies = {
        "avi-claims-2g-frames": mjpg_avi(d / "frames.avi", 64, 48, 24, frames=0x7FFFFFFF),
        "avi-claims-4g-fps": mjpg_avi(d / "fps.avi", 64, 48, 24, rate=(0xFFFFFFFF, 1)),
        "avi-claims-0-fps": mjpg_avi(d / "fps0.avi", 64, 48, 24, rate=(0, 1)),
        "avi-claims-1-frame-per-hour": mjpg_avi(d / "slow.avi", 64, 48, 24, rate=(1, 3600)),
    }
    frame_lie = mjpg_avi(d / "size.avi", 3000, 3000, 40, size=(64, 48))
    cases["video"] += [
        ("video-small", "load_video", [str(small)], {"num_frames": 16}, "ok"),
        ("video-3000px-x40-16-frames", "load_video", [str(big)], {"num_frames": 16}, ("VideoLoadError", "megapixels")),
        ("video-8mp-x64-all-frames", "load_video", [str(eight)], {}, ("VideoLoadError", "max_total_pixels")),
        ("video-3000px-x40-16-frames-max-side", "load_video", [str(big)],
         {"num_frames": 16, "max_side": 224, "max_pixels": 10_000_000}, "ok"),
        ("video-8mp-x64-16-frames", "load_video", [str(eight)], {"num_frames": 16}, ("VideoLoadError", "max_total_pixels")),
        ("av-8mp-x64", "av_from_files", [str(eight)], {}, "ok"),
        ("av-3000px-x40", "av_from_files", [str(big)], {}, "ok"),
        ("av-3000px-x40-start-3s", "av_from_files", [str(big)], {"start_s": 3.0}, "ok"),
        ("av-small", "av_from_files", [str(small)], {}, "ok"),
        ("video-frames-larger-than-header", "load_video", [str(frame_lie)], {"num_frames": 16},
         ("VideoLoadError", "megapixels|max_total_pixels|corrupt|No frame")),
    ]
    for name, p in lies.items():
        cases["video"].append((name, "load_video", [str(p)], {"num_frames": 16}, ("ok", "VideoLoadError")))
        cases["video"].append((name + "-av", "av_from_files", [str(p)], {}, ("ok", "VideoLoadError")))
    # sounds
    cases["audio"] += [
        ("wav-normal", "load_audio", [put("ok.wav", wav(44_100, 2))], {}, "ok"),
        ("wav-rate-0", "load_audio", [put("r0.wav", wav(declared_rate=0))], {}, ("AudioLoadError", "sample rate of 0 Hz")),
        ("wav-rate-4g", "load_audio", [put("r4g.wav", wav(declared_rate=0xFFFFFFFF))], {},
         ("AudioLoadError", "sample rate of 4294967295 Hz")),
        ("wav-rate-1", "load_audio", [put("r1.wav", wav(declared_rate=1))], {}, ("AudioLoadError", "sample rate")),
        ("wav-65535-channels", "load_audio", [put("c65535.wav", wav(channels=1, declared_channels=65535))], {},
         ("AudioLoadError", "channels")),
        ("wav-huge-declared-data", "load_audio", [put("huge.wav", wav(declared_bytes=0xFFFFFFF0))], {}, "ok"),
        ("wav-11-minutes", "load_audio", [put("long.wav", wav(rate=1_000, seconds=660))], {},
         ("AudioLoadError", "limit is 600 s")),
        ("wav-too-many-samples", "load_audio", [put("many.wav", wav(rate=768_000, channels=64, width=1, seconds=1.4))],
         {}, ("AudioLoadError", "samples in all")),
        ("av-wav-rate-0", "av_from_files", [None, str(d / "r0.wav")], {}, ("AudioLoadError", "sample rate")),
    ]
    # weights
    models = ROOT / "data" / "models"
    for family, loader in [("mini-fusion", "load_fusion_model"), ("mini-rgbd-mae", "load_multimodal_model"),
                           ("mini-av-mae", "load_multimodal_model"), ("mini-mae", "load_model"),
                           ("mini-video-mae", "load_model")]:
        for how in ("truncated", "garbage", "huge-header", "bad-json"):
            p = _corrupt_model(models / family, d / f"{family}-{how}", how)
            cases["models"].append((f"{family}-{how}", loader, [str(p)], {}, ("ModelLoadError", str(p.name))))
    cases["models"].append(("mini-fusion-ok", "load_fusion_model", [str(models / "mini-fusion")], {}, "ok"))
    del cv2
    warm = {"images": [("load_image", [grey16], {})], "depth": [("load_depth", [grey16], {})],
            "video": [("load_video", [str(small)], {"num_frames": 4}), ("av_from_files", [str(small)], {})],
            "audio": [("load_audio", [str(d / "ok.wav")], {})],
            "models": [("load_model", ["mini-mae"], {}), ("load_fusion_model", ["mini-fusion"], {}),
                       ("load_multimodal_model", ["mini-rgbd-mae"], {})]}
    return cases, warm


# ---------------------------------------------------------------------------------------------- the worker
def _status(key: str) -> int:
    """A ``/proc/self/status`` field in bytes (VmRSS, VmHWM, VmSize)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _loaders() -> dict:
    from explorer.audio import load_audio
    from explorer.depth import load_depth
    from explorer.io import load_image
    from explorer.models.registry import load_fusion_model, load_model, load_multimodal_model
    from explorer.multimodal.inputs import av_from_files, rgbd_from_files
    from explorer.video import load_video

    return {f.__name__: f for f in (load_audio, load_depth, load_image, load_video, av_from_files, rgbd_from_files,
                                    load_model, load_fusion_model, load_multimodal_model)}


def _worker(spec_path: str) -> None:
    """Run the cases of one family (JSON at ``spec_path``): one JSON line per case start and end on stdout."""
    import gc
    import resource
    import signal
    import time

    spec = json.loads(Path(spec_path).read_text())
    loaders = _loaders()
    for warm in spec["warm"]:  # thread pools and lazy imports exist before the limit is set
        try:
            loaders[warm[0]](*warm[1], **warm[2])
        except Exception:  # noqa: BLE001 - a warm-up only
            pass
    gc.collect()
    gc.freeze()  # what the imports made is never collected again: a collection between cases then costs little
    base_vm = _status("VmSize")
    resource.setrlimit(resource.RLIMIT_AS, (base_vm + spec["limit"], resource.RLIM_INFINITY))
    can_reset = True

    def too_long(signum, _frame):
        raise TimeoutError(f"over {spec['seconds']} s of CPU" if signum == signal.SIGPROF else f"over {spec['wall']} s")

    signal.signal(signal.SIGPROF, too_long)  # CPU time of the process, every thread counted
    signal.signal(signal.SIGALRM, too_long)  # wall-clock time: a case that hangs
    print(json.dumps({"base_vm": base_vm, "base_rss": _status("VmRSS")}), flush=True)
    for case_id, loader, args, kwargs in spec["cases"]:
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to the current RSS
        except OSError:
            can_reset = False
        rss0 = _status("VmRSS")
        print(json.dumps({"start": case_id}), flush=True)
        t0, cpu0 = time.perf_counter(), time.process_time()
        signal.setitimer(signal.ITIMER_PROF, spec["seconds"] + 5)
        signal.setitimer(signal.ITIMER_REAL, spec["wall"] + 5)
        try:
            out = loaders[loader](*args, **kwargs)
            result = {"ok": type(out).__name__}
            del out
        except BaseException as e:  # noqa: BLE001 - recorded, judged by the test
            cls = type(e)
            result = {"error": cls.__name__, "module": cls.__module__, "message": str(e)[:500]}
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.setitimer(signal.ITIMER_REAL, 0)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        peak = (_status("VmHWM") if can_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - rss0
        print(json.dumps({"end": case_id, "seconds": seconds, "cpu": cpu, "peak": peak, "peak_is_per_case": can_reset, **result}),
              flush=True)


#: Families run together in one subprocess each (importing torch and transformers costs seconds per process).
GROUPS = {"media": ("images", "depth", "video", "audio"), "models": ("models",)}


def _launch(group: str, cases: list, warm: list, tmp: Path) -> tuple[subprocess.Popen, list]:
    """Start ``cases`` in a fresh, limited subprocess (see :func:`_worker`)."""
    spec = tmp / f"{group}.json"
    spec.write_text(json.dumps({"cases": [c[:4] for c in cases], "warm": warm, "limit": LIMIT, "seconds": SECONDS,
                                "wall": WALL}))
    env = dict(os.environ, HF_HUB_OFFLINE="1", MALLOC_ARENA_MAX="2", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(Path(__file__).parent)]))
    env.pop("OPENCV_IO_MAX_IMAGE_PIXELS", None)
    code = f"import test_hostile_files as t; t._worker({str(spec)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=str(tmp))
    return proc, cases


def _collect(group: str, proc: subprocess.Popen, cases: list) -> tuple[dict, list[str]]:
    """Wait for a worker; returns ``({case id: outcome}, problems)`` (a dead worker is blamed on its running case)."""
    try:
        out, err = proc.communicate(timeout=120 + (WALL + 5) * len(cases))
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        rc = "killed after the time limit"
    results, started = {}, None
    for line in out.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "start" in rec:
            started = rec["start"]
        elif "end" in rec:
            results[rec["end"]] = rec
            started = None
    problems = []
    if rc != 0:
        problems.append(f"{group}: the worker ended with {rc}" + (f" during case {started!r}" if started else "")
                        + f"\n{err[-3000:]}")
    return results, problems


def _judge(case, rec) -> list[str]:
    case_id, _loader, _args, _kwargs, expected = case
    if rec is None:
        return [f"{case_id}: no result (the worker died before or during it)"]
    problems = []
    if rec["cpu"] > SECONDS or rec["seconds"] > WALL:
        problems.append(f"{case_id}: took {rec['cpu']:.1f} s of CPU, {rec['seconds']:.1f} s in all (limits {SECONDS:.0f} s, "
                        f"{WALL:.0f} s)")
    limit = PEAK_LIMITS.get(case_id, LIMIT)
    if rec["peak"] > limit:
        problems.append(f"{case_id}: peak memory grew by {rec['peak'] / GiB:.2f} GiB (limit {limit / GiB:.1f} GiB)")
    got = "ok" if "ok" in rec else rec["error"]
    if expected == "ok":
        if got != "ok":
            problems.append(f"{case_id}: should load, raised {rec['error']} ({rec['module']}): {rec['message']}")
    elif expected[0] == "ok":  # either loads or is refused by the loader's own error
        if got not in ("ok", expected[1]):
            problems.append(f"{case_id}: raised {got} ({rec['module']}): {rec['message']}")
    else:
        cls, pattern = expected
        import re

        if got != cls:
            problems.append(f"{case_id}: expected {cls}, got {got}" + ("" if got == "ok" else f" ({rec['module']}): {rec['message']}"))
        elif not re.search(pattern, rec["message"]):
            problems.append(f"{case_id}: {cls} without a reason matching {pattern!r}: {rec['message']}")
    return problems


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    return d, *_corpus(d)


@pytest.fixture(scope="module")
def runs(corpus):
    """Every group's worker, started together (the model worker spends most of its time importing transformers,
    on the other core) and collected in turn: ``{family: ({case id: outcome}, problems)}``."""
    d, cases, warm = corpus
    started = {g: _launch(g, [c for f in fams for c in cases[f]], [w for f in fams for w in warm[f]], d)
               for g, fams in reversed(GROUPS.items())}
    out = {}
    for group, families in GROUPS.items():
        results, problems = _collect(group, *started[group])
        out.update({f: (results, problems) for f in families})
    return out


@pytest.mark.parametrize("family", ["images", "depth", "video", "audio", "models"])
def test_every_loader_refuses_hostile_files_in_bounded_memory_and_time(corpus, runs, family):
    _d, cases, _warm = corpus
    results, problems = runs[family]
    problems = list(problems)
    for case in cases[family]:
        problems += _judge(case, results.get(case[0]))
    mine = [results[c[0]] for c in cases[family] if c[0] in results]
    report = "\n".join(f"  {r['end']}: {r['seconds']:.2f} s ({r['cpu']:.2f} s CPU), peak +{r['peak'] / 2**20:.0f} MiB, "
                       + (r["ok"] if "ok" in r else f"{r['error']}: {r['message'][:120]}") for r in mine)
    print(f"\n{family}:\n{report}")
    assert not problems, "\n".join(problems) + "\n\nall cases:\n" + report


def test_header_sizes_are_read_without_decoding():
    from explorer.io import image_size

    assert image_size(png_bomb(30_000, 20_000, bad_text_crc=True, bad_ihdr_crc=True)) == (30_000, 20_000)
    assert image_size(jpeg_claiming(60_000, 50_000)) == (60_000, 50_000)
    assert image_size(tiff_claiming(100_000, 90_000)) == (100_000, 90_000)
    assert image_size(webp_claiming(1 << 24, 1 << 20)) == (1 << 24, 1 << 20)
    assert image_size(gif_claiming(65_535, 100)) == (65_535, 100)
    assert image_size(gif_claiming(65_535, 65_535, in_frame=True)) == (65_535, 65_535)
    assert image_size(bmp_claiming(60_000, -50_000)) == (60_000, 50_000)
    assert image_size(b"P5\n# comment\n640 480\n255\n") == (640, 480)
    assert image_size(b"not an image") is None
    for ext, shape in [(".png", (30, 40, 3)), (".jpg", (30, 40, 3)), (".tiff", (30, 40)), (".bmp", (30, 40, 3)),
                       (".webp", (30, 40, 3)), (".pgm", (30, 40))]:
        assert image_size(_encode(ext, np.zeros(shape, np.uint8))) == (40, 30), ext
