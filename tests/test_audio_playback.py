"""Sound you can hear: the Griffin-Lim waveform's own log-mel is close to the spectrogram it came from (against white
noise of the same loudness as the reference), seeded; the player's WAV bytes decode back to the samples."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from explorer.audio import kaldi_fbank, log_mel
from explorer.audio_playback import masked_spectrogram, spectrogram_to_audio, wav_bytes

RATE = 16_000


def _sound(seed: int = 0) -> np.ndarray:
    t = np.arange(RATE) / RATE
    rng = np.random.default_rng(seed)
    return (0.15 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.2 * np.sin(2 * np.pi * (1000 + 500 * t) * t)
            + rng.normal(0, 0.01, RATE))


@pytest.mark.parametrize("kind, front", [("log_mel", lambda x: log_mel(x).T), ("kaldi_fbank", lambda x: kaldi_fbank(x).T)])
def test_griffin_lim_waveform_has_the_spectrogram_it_came_from(kind, front):
    x = _sound()
    spec = front(x)[:, :96]
    y = spectrogram_to_audio(spec, kind=kind, n_iter=32, seed=3)
    assert y.dtype == np.float32 and y.shape == (400 + 95 * 160,) and np.abs(y).max() <= 1.0
    back = front(y)
    assert back.shape == spec.shape
    loud = spec > spec.max() - 60 / 4.343  # within 60 dB of the loudest bin
    err = np.abs(back - spec)[loud].mean()
    noise = front(np.random.default_rng(1).normal(0, x.std(), len(x)))[:, :96]
    assert err < 0.5 and err < np.abs(noise - spec)[loud].mean() / 8  # measured: 0.21 / 0.14 nats vs 5.5 for noise
    assert abs(y.std() / x.std() - 1) < 0.15
    np.testing.assert_array_equal(y, spectrogram_to_audio(spec, kind=kind, n_iter=32, seed=3))  # seeded
    assert not np.array_equal(y, spectrogram_to_audio(spec, kind=kind, n_iter=32, seed=4))


def test_the_players_bytes_decode_back_to_the_samples():
    x = (_sound(2) * 0.9).astype(np.float32)
    data = wav_bytes(x)
    back, rate = sf.read(io.BytesIO(data), dtype="float64")
    assert rate == RATE and back.shape == x.shape
    np.testing.assert_allclose(back, x, atol=1 / 32767)
    loud = wav_bytes(np.array([2.0, -3.0, 0.5]))  # clipped, not wrapped
    np.testing.assert_allclose(sf.read(io.BytesIO(loud))[0], [32767 / 32768, -1.0, 0.5], atol=1e-4)


def test_masked_spectrogram_and_bad_input():
    spec = np.arange(128 * 4, dtype=np.float32).reshape(128, 4)
    hidden = np.zeros_like(spec, bool)
    hidden[:, 1] = True
    m = masked_spectrogram(spec, hidden)
    assert (m[:, 1] == 0).all() and (m[:, 0] == spec[:, 0]).all()
    with pytest.raises(ValueError, match=r"\(128 mel bands, frames\)"):
        spectrogram_to_audio(np.zeros((64, 10)))
    with pytest.raises(ValueError, match="NaN"):
        spectrogram_to_audio(np.full((128, 10), np.nan))
    with pytest.raises(ValueError, match="shape"):
        wav_bytes(np.zeros((0,)))


def test_the_multimodal_app_plays_each_spectrogram_row_on_request():
    """Listen: three players (original, what the model heard, reconstruction) whose sounds are the compute layer's, for
    the result on screen; a new result drops them; a model without sound has no Listen row."""
    import soundfile as sf

    from explorer.audio_playback import PLAYERS, playback
    from explorer.widgets.multimodal_app import MultiMAEApp

    app = MultiMAEApp("mini-av-mae", budgets={"video": 1.0, "audio": 0.2})
    assert app.listen_box.layout.display == "" and app.players.children == ()
    app.listen()
    players = [box.children[1] for box in app.players.children]
    assert len(players) == len(PLAYERS) and all(p.format == "wav" for p in players)
    expect = playback(app.result["audio"], kind="log_mel", seed=0)
    assert [bytes(p.value) for p in players] == [expect[name][0] for name in PLAYERS]
    heard, _ = sf.read(io.BytesIO(bytes(players[1].value)))
    whole, _ = sf.read(io.BytesIO(bytes(players[0].value)))
    assert np.sqrt(np.mean(heard ** 2)) < np.sqrt(np.mean(whole ** 2))  # 80 % of the patches are silent in what it heard
    labels = [box.children[0].value for box in app.players.children]
    assert all("approximation" in lab for lab in labels)
    app.set_budgets({"audio": 0.5})
    assert app.players.children == () and app.sounds == {}
    assert MultiMAEApp("mini-rgbd-mae").listen_box.layout.display == "none"


def test_a_sound_from_a_file_plays_as_its_own_samples(tmp_path):
    """The original player of an uploaded sound plays the very second the spectrogram was made from, not Griffin-Lim."""
    from explorer.widgets.multimodal_app import MultiMAEApp

    t = np.arange(24_000) / 16_000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tmp_path / "tone.flac", tone, 16_000)
    app = MultiMAEApp("mini-av-mae", budgets={"video": 1.0, "audio": 0.5})
    app.set_av(None, str(tmp_path / "tone.flac"), start_s=0.25)
    app.listen()
    box = app.players.children[0]
    assert "its own samples" in box.children[0].value and "approximation" not in box.children[0].value
    played, rate = sf.read(io.BytesIO(bytes(box.children[1].value)), dtype="float32")
    assert rate == 16_000 and played.shape == (16_000,)
    np.testing.assert_allclose(played, tone[4_000:20_000], atol=1 / 32767 + 1e-6)
    app._set_sample(app.sample_dd.options[0][1])  # a generated sample: no own samples, back to Griffin-Lim
    app.listen()
    assert "approximation" in app.players.children[0].children[0].value
