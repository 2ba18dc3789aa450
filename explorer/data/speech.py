"""Speech for the mini audio-visual MAE: synthetic (espeak-ng) and real recorded prompts (Asterisk, Allison Smith).

    x = espeak_speech(seed=3)                    # (N,) float32 at 16 kHz: random English words, seeded voice / speed / pitch
    files = asterisk_prompts("test")             # the held-out real prompts (paths), fixed by name
    w = speech_window(load_prompt(files[0]), 0)  # (16000,) one second of it

* **espeak-ng** (GPL-3; the Debian package ``espeak-ng``) speaks random sentences made of :data:`WORDS`, with a
  seeded English voice and variant, speed and pitch, through ``espeak-ng -w file.wav`` in a temporary folder that is
  deleted at once.  Nothing generated is stored.
* **Asterisk core sounds, en_US_f_Allison** (the Debian package ``asterisk-core-sounds-en-wav``: 8 kHz WAV prompts of
  a telephone system, recorded by Allison Smith; © 2003-2010 Allison Smith, CC-BY-SA-3.0, per
  ``/usr/share/doc/asterisk-core-sounds-en-wav/copyright``).  They are read where the package puts them, never copied.
  The split is by name, not by chance: a prompt is **held out** when the CRC-32 of its path relative to the sound folder
  (e.g. ``digits/7.wav``) is ``4 (mod 5)`` — about 20 %, never trained on; the rest may be trained on.  The
  ``silence/`` folder is left out.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

RATE = 16_000
ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_LICENCE = ("Asterisk core sounds (en_US_f_Allison), © 2003-2010 Allison Smith, CC-BY-SA-3.0 "
                    "(Debian package asterisk-core-sounds-en-wav)")
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan")
ESPEAK_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5", "+klatt", "+croak")
WORDS = tuple("""the a one two three four five six seven eight nine ten zero hello please press enter your number
password call transfer busy line again message goodbye thank you welcome to for is not available at this time record
after tone when finished hang up option menu main sorry invalid extension mailbox new old saved first next last
morning evening today tomorrow minute hour second dial star pound operator wait hold queue agent conference room
water river table window green yellow purple orange red blue quick brown fox jumps over lazy dog""".split())


class SpeechUnavailable(RuntimeError):
    """espeak-ng or the Asterisk prompts are not installed (``make sysdeps`` installs both)."""


def asterisk_prompts(part: str = "train") -> list[Path]:
    """Sorted paths of the Asterisk prompts in ``part`` (``"train"`` or ``"test"``, the held-out ~20 %; see the module
    docstring).  Raises :class:`SpeechUnavailable` when the package is missing."""
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', not {part!r}")
    files = sorted(p for p in ASTERISK_DIR.rglob("*.wav") if p.parent.name != "silence") if ASTERISK_DIR.is_dir() else []
    if not files:
        raise SpeechUnavailable(f"No Asterisk prompts in {ASTERISK_DIR}: install the Debian package asterisk-core-sounds-en-wav.")
    held = [p for p in files if zlib.crc32(p.relative_to(ASTERISK_DIR).as_posix().encode()) % 5 == 4]
    return held if part == "test" else [p for p in files if p not in set(held)]


@lru_cache(maxsize=1024)
def load_prompt(path: Path) -> np.ndarray:
    """``(N,)`` float32 at 16 kHz: one prompt, decoded by :func:`explorer.audio.load_audio` (soundfile) and resampled."""
    from ..audio import load_audio

    return np.asarray(load_audio(Path(path)).samples, np.float32)


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` binary is on the PATH."""
    return shutil.which("espeak-ng") is not None


def espeak_speech(seed: int, *, words: tuple[int, int] = (6, 14)) -> np.ndarray:
    """``(N,)`` float32 at 16 kHz: espeak-ng saying a random sentence; text, voice, variant, speed (110–230 words/min),
    pitch (20–80) and word gap follow ``seed``.  Raises :class:`SpeechUnavailable` without espeak-ng."""
    from ..audio import load_audio

    if not espeak_available():
        raise SpeechUnavailable("espeak-ng is not installed: install the Debian package espeak-ng.")
    rng = np.random.default_rng([seed, 31])
    text = " ".join(rng.choice(WORDS, int(rng.integers(words[0], words[1] + 1))))
    voice = str(rng.choice(ESPEAK_VOICES)) + str(rng.choice(ESPEAK_VARIANTS))
    args = ["espeak-ng", "-v", voice, "-s", str(int(rng.integers(110, 231))), "-p", str(int(rng.integers(20, 81))),
            "-g", str(int(rng.integers(0, 6)))]
    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run([*args, "-w", str(out), text], check=True, capture_output=True, timeout=60)
        x = np.asarray(load_audio(out).samples, np.float32)
    return x


def telephone_band(x: np.ndarray, rate: int = RATE) -> np.ndarray:
    """``(N,)``: ``x`` band-limited to 4 kHz as an 8 kHz telephone recording is (down to 8 kHz and back up)."""
    from scipy.signal import resample_poly

    y = resample_poly(resample_poly(np.asarray(x, np.float64), 1, rate // 8000), rate // 8000, 1)
    return y[:len(x)].astype(np.float32)


def speech_window(x: np.ndarray, seed: int, *, rate: int = RATE, gain_db: tuple[float, float] | None = None) -> np.ndarray:
    """``(rate,)`` float32: one second of ``x`` from a seeded start (padded with silence, at a seeded place, when ``x`` is
    shorter); ``gain_db`` (low, high): a seeded loudness change, clipped to [-1, 1]."""
    rng = np.random.default_rng([seed, 47])
    x = np.asarray(x, np.float32)
    if len(x) >= rate:
        lo = int(rng.integers(0, len(x) - rate + 1))
        w = x[lo:lo + rate]
    else:
        lo = int(rng.integers(0, rate - len(x) + 1))
        w = np.zeros(rate, np.float32)
        w[lo:lo + len(x)] = x
    if gain_db is not None:
        w = np.clip(w * 10 ** (rng.uniform(*gain_db) / 20), -1, 1)
    return w.astype(np.float32)
