"""device_bench.mfcc against tf.signal, and its shapes, settings, errors, WAV reader and CLI.

The reference is the MLPerf Tiny KWS pipeline written with ``tf.signal`` (stft, abs, mel matrix,
tensordot, log, mfccs_from_log_mel_spectrograms), with its settings spelled out here rather than
read from ``MfccConfig``. It runs in float64: the float32 pipeline's own rounding reaches 2 % of
(1 + |value|) on a chirp (bands whose energy is near the float32 FFT noise floor), while the
float64 one agrees with this module to float32 output rounding.
"""

from __future__ import annotations

import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from apt_packages import ensure_program

from device_bench.errors import BenchInputError
from device_bench.mfcc import MfccConfig, mel_weight_matrix, mfcc, read_wav
from edgekit.core._keras import tf

REPO = Path(__file__).resolve().parents[2]
RATE = 16000
CLIP = 16000
# Measured max |mfcc - tf.signal (float64)| / (1 + |tf|): 5.5e-8 (chirp, speech, tones, noise),
# i.e. the float32 rounding of the output (<= 2**-24 = 6e-8); about 5x headroom.
TF_RTOL = 3e-7
# Measured max |mel_weight_matrix - linear_to_mel_weight_matrix(float64)|: 8.8e-15.
MEL_ATOL = 1e-12
# The CLI prints %.4f: half a unit of the last digit, plus float32 slack.
PRINT_ATOL = 5.01e-5


def _tf_mfcc(clip: np.ndarray) -> np.ndarray:
    """The reference: tf.signal in float64 on exactly 16000 samples."""
    x = tf.constant(clip, tf.float64)
    spec = tf.abs(tf.signal.stft(x, frame_length=640, frame_step=320, fft_length=1024,
                                 window_fn=tf.signal.hann_window, pad_end=False))
    mel = tf.signal.linear_to_mel_weight_matrix(40, 513, 16000, 20.0, 4000.0, dtype=tf.float64)
    log_mel = tf.math.log(tf.tensordot(spec, mel, 1) + 1e-6)
    return tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :10].numpy()


def _to_clip(x: np.ndarray) -> np.ndarray:
    """Pads with zeros or cuts to one clip, written out independently of fit_window."""
    return np.concatenate([x, np.zeros(max(0, CLIP - len(x)))])[:CLIP]


def _signal(name: str) -> np.ndarray:
    rng = np.random.default_rng(1234)
    t = np.arange(CLIP) / RATE
    if name == "chirp":  # 100 Hz -> 4 kHz over the second
        return 0.5 * np.sin(2 * np.pi * (100 * t + 1950 * t**2))
    if name == "tones":
        tones = [a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
                 for a, f in [(0.3, 440.0), (0.2, 1234.0), (0.1, 3100.0)]]
        return np.sum(tones, axis=0) + 0.01 * rng.standard_normal(CLIP)
    if name == "noise":
        return 1e-3 * rng.standard_normal(CLIP)
    # installs the synthesizer when it is missing (CI=true: fails when it cannot)
    ensure_program("espeak-ng", "espeak-ng")
    from edgekit.data.kws_synth import Speaker, synthesize

    return synthesize(["yes"], Speaker("en-us", "m3"), rate=160, pitch=50)[0].astype(np.float64)


def _rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(got - ref) / (1.0 + np.abs(ref))))


@pytest.mark.parametrize("name", ["chirp", "tones", "noise", "speech"])
def test_matches_tf_signal(name: str) -> None:
    x = _signal(name)
    ref = _tf_mfcc(_to_clip(x))
    got = mfcc(x)
    assert got.shape == ref.shape == (49, 10)
    assert np.abs(ref).max() > 1.0  # a real, non-degenerate reference
    assert _rel_err(got, ref) <= TF_RTOL


def test_mel_weight_matrix_matches_tf_signal() -> None:
    ref = tf.signal.linear_to_mel_weight_matrix(40, 513, 16000, 20.0, 4000.0,
                                                dtype=tf.float64).numpy()
    got = mel_weight_matrix(MfccConfig())
    assert got.shape == ref.shape == (513, 40)
    assert np.max(np.abs(got - ref)) <= MEL_ATOL


def _batch(n: int = 5) -> np.ndarray:
    return np.random.default_rng(7).uniform(-0.5, 0.5, (n, CLIP))


def test_one_clip_and_a_batch() -> None:
    x = _batch()
    one = mfcc(x[0])
    assert one.shape == (49, 10) and one.dtype == np.float32
    many = mfcc(x)
    assert many.shape == (5, 49, 10) and many.dtype == np.float32
    singles = np.stack([mfcc(clip) for clip in x])
    np.testing.assert_allclose(many, singles, rtol=1e-6, atol=1e-6)


def test_small_batches_give_the_same_result() -> None:
    x = _batch()
    np.testing.assert_allclose(mfcc(x, batch=2), mfcc(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mfcc(x, batch=1), mfcc(x), rtol=1e-6, atol=1e-6)


def test_short_audio_is_padded_and_long_audio_cut() -> None:
    x = _batch(2)
    short, long = x[:, :12000], np.concatenate([x, x[:, :4000]], axis=1)
    padded = np.concatenate([short, np.zeros((2, 4000))], axis=1)
    np.testing.assert_array_equal(mfcc(short), mfcc(padded))
    np.testing.assert_array_equal(mfcc(short[0]), mfcc(padded[0]))
    np.testing.assert_array_equal(mfcc(long), mfcc(x))
    assert not np.array_equal(mfcc(short), mfcc(x))  # the padding is really there


def test_int16_is_scaled_by_1_over_32768() -> None:
    pcm = (_signal("tones") * 32767).astype(np.int16)
    np.testing.assert_array_equal(mfcc(pcm), mfcc(pcm.astype(np.float64) / 32768.0))


def test_config_defaults() -> None:
    c = MfccConfig()
    assert (c.sample_rate, c.clip_samples) == (16000, 16000)
    assert (c.frame_length, c.frame_step, c.fft_length) == (640, 320, 1024)
    assert c.num_frames == 1 + (16000 - 640) // 320 == 49
    assert c.shape == (49, 10)


def test_config_dict_round_trip() -> None:
    for c in (MfccConfig(), MfccConfig(num_mel_bins=32, num_mfcc=13, upper_hz=7600.0)):
        d = c.to_dict()
        assert isinstance(d, dict) and d["num_mfcc"] == c.num_mfcc
        assert MfccConfig.from_dict(d) == c


def test_config_unknown_key_is_named() -> None:
    with pytest.raises(BenchInputError, match="num_cepstra"):
        MfccConfig.from_dict({**MfccConfig().to_dict(), "num_cepstra": 13})


@pytest.mark.parametrize("bad", [
    {"upper_hz": 8000.5}, {"lower_hz": 4000.0}, {"num_mfcc": 41}, {"num_mfcc": 0},
    {"window_ms": 1001.0}, {"clip_seconds": 0.02}, {"sample_rate": 0},
])
def test_config_bad_values(bad: dict[str, float]) -> None:
    with pytest.raises(BenchInputError):
        MfccConfig(**bad)
    with pytest.raises(BenchInputError):
        MfccConfig.from_dict(bad)


@pytest.mark.parametrize("audio", [
    np.zeros((2, 3, CLIP)), "hello", np.array(["a", "b"]), np.array([]), np.zeros((3, 0)),
    np.float64(0.5),
], ids=["3d", "str", "str-array", "empty", "empty-2d", "scalar"])
def test_bad_audio(audio: object) -> None:
    with pytest.raises(BenchInputError) as info:
        mfcc(audio)  # type: ignore[arg-type]
    assert str(info.value) and "\n" not in str(info.value)


def _write_wav(path: Path, pcm: np.ndarray, rate: int = RATE, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def _pcm() -> np.ndarray:
    return (_signal("tones") * 32767).astype(np.int16)


def test_read_wav(tmp_path: Path) -> None:
    pcm = _pcm()
    samples, rate = read_wav(str(_write_wav(tmp_path / "a.wav", pcm)))
    assert rate == RATE and samples.dtype == np.int16
    np.testing.assert_array_equal(samples, pcm)


def test_read_wav_rejects_stereo_and_non_wav(tmp_path: Path) -> None:
    stereo = _write_wav(tmp_path / "st.wav", np.repeat(_pcm(), 2), channels=2)
    with pytest.raises(BenchInputError, match=re.escape(str(stereo))):
        read_wav(str(stereo))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav file at all")
    with pytest.raises(BenchInputError, match=re.escape(str(junk))):
        read_wav(str(junk))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "device_bench.mfcc", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_cli_prints_the_features(tmp_path: Path) -> None:
    pcm = _pcm()
    done = _cli(str(_write_wav(tmp_path / "a.wav", pcm)))
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert len(rows) == 49 and all(len(r) == 10 for r in rows)
    printed = np.array(rows, dtype=np.float64)
    np.testing.assert_allclose(printed, mfcc(pcm), rtol=0, atol=PRINT_ATOL)


@pytest.mark.parametrize("kind", ["stereo", "8k"])
def test_cli_rejects_bad_wav(tmp_path: Path, kind: str) -> None:
    pcm = _pcm()
    path = (_write_wav(tmp_path / "st.wav", np.repeat(pcm, 2), channels=2) if kind == "stereo"
            else _write_wav(tmp_path / "lo.wav", pcm[::2], rate=8000))
    done = _cli(str(path))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(path) in lines[0]


def test_cli_without_argument() -> None:
    done = _cli()
    assert done.returncode == 2 and done.stdout == "" and "usage" in done.stderr


def test_imports_no_tensorflow() -> None:
    code = "import device_bench.mfcc, sys; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_batch_is_refused(bad) -> None:
    with pytest.raises(BenchInputError, match="batch must be an integer >= 1"):
        mfcc(np.zeros(16000), batch=bad)


def test_complex_audio_and_degenerate_settings_are_refused() -> None:
    with pytest.raises(BenchInputError, match="mfcc needs audio samples"):
        mfcc(np.zeros(16000, np.complex64))
    with pytest.raises(BenchInputError, match="window_ms"):
        MfccConfig(window_ms=0.0)
    with pytest.raises(BenchInputError, match="log_offset must be > 0"):
        MfccConfig(log_offset=0.0)
