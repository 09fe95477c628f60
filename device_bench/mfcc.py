"""The keyword-spotting front end: 49x10 MFCC of one second of 16 kHz audio, numpy only.

The features of "Hello Edge" (arXiv:1711.07128) and of MLPerf Tiny's KWS benchmark
(``benchmark/training/keyword_spotting/get_dataset.py`` of https://github.com/mlcommons/tiny):
40 ms Hann windows every 20 ms (49 frames in 1 s), a 1024-point FFT magnitude, 40 mel bands
(HTK mel scale, triangles from 20 Hz to 4 kHz), ``log(mel + 1e-6)`` and the first 10 DCT-II
coefficients, scaled as ``tf.signal.mfccs_from_log_mel_spectrograms`` scales them. The same
function runs on the host (edgekit makes its keyword dataset with it) and on the device (a
deployed keyword spotter needs the same features), which is why this module imports nothing
but numpy. ``tests/device_bench/test_devbench_mfcc.py`` checks it against ``tf.signal``.

``python -m device_bench.mfcc FILE.wav`` prints the features of a 16-bit PCM WAV file.
"""

from __future__ import annotations

import functools
import sys
import wave
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from device_bench.errors import BenchInputError

__all__ = ["MfccConfig", "fit_window", "mel_weight_matrix", "mfcc", "read_wav"]


@dataclass(frozen=True)
class MfccConfig:
    """The front end's settings (the defaults are MLPerf Tiny KWS's).

    Attributes:
        sample_rate: Audio sample rate in Hz.
        clip_seconds: Length of one clip; shorter audio is zero-padded, longer is cut.
        window_ms: Frame length in milliseconds.
        stride_ms: Frame step in milliseconds.
        num_mel_bins: Mel bands.
        lower_hz: Lower edge of the first mel band.
        upper_hz: Upper edge of the last mel band.
        num_mfcc: DCT coefficients kept.
        log_offset: Added to the mel energies before the log.
    """

    sample_rate: int = 16000
    clip_seconds: float = 1.0
    window_ms: float = 40.0
    stride_ms: float = 20.0
    num_mel_bins: int = 40
    lower_hz: float = 20.0
    upper_hz: float = 4000.0
    num_mfcc: int = 10
    log_offset: float = 1e-6

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise BenchInputError(f"sample_rate must be > 0, got {self.sample_rate}")
        if not 0 <= self.lower_hz < self.upper_hz <= self.sample_rate / 2:
            raise BenchInputError(
                f"mel edges must satisfy 0 <= lower_hz < upper_hz <= {self.sample_rate / 2}, "
                f"got {self.lower_hz}, {self.upper_hz}")
        if not 0 < self.num_mfcc <= self.num_mel_bins:
            raise BenchInputError(f"num_mfcc must be in [1, num_mel_bins={self.num_mel_bins}], "
                                  f"got {self.num_mfcc}")
        if not self.log_offset > 0:
            raise BenchInputError(f"log_offset must be > 0, got {self.log_offset}")
        if not 1 <= self.frame_length <= self.clip_samples or self.frame_step < 1:
            raise BenchInputError(f"window_ms {self.window_ms} / stride_ms {self.stride_ms} do "
                                  f"not fit a {self.clip_seconds} s clip")

    @property
    def clip_samples(self) -> int:
        """Samples in one clip (16000)."""
        return round(self.sample_rate * self.clip_seconds)

    @property
    def frame_length(self) -> int:
        """Samples per frame (640)."""
        return round(self.sample_rate * self.window_ms / 1000)

    @property
    def frame_step(self) -> int:
        """Samples between frame starts (320)."""
        return round(self.sample_rate * self.stride_ms / 1000)

    @property
    def fft_length(self) -> int:
        """The smallest power of two that holds a frame (1024), as ``tf.signal.stft`` picks."""
        return 1 << (self.frame_length - 1).bit_length()

    @property
    def num_frames(self) -> int:
        """Frames per clip (49): no padding at the end."""
        return 1 + (self.clip_samples - self.frame_length) // self.frame_step

    @property
    def shape(self) -> tuple[int, int]:
        """Feature shape of one clip, (frames, coefficients) = (49, 10)."""
        return (self.num_frames, self.num_mfcc)

    def to_dict(self) -> dict[str, Any]:
        """Returns the settings as a plain dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> MfccConfig:
        """Builds the settings from a dict.

        Raises:
            BenchInputError: Unknown keys (the known ones are listed) or bad values.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise BenchInputError(f"unknown MFCC settings {unknown}; known: {sorted(known)}")
        return cls(**config)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """HTK mel scale: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(hz / 700.0)


@functools.lru_cache(maxsize=8)
def mel_weight_matrix(config: MfccConfig = MfccConfig()) -> np.ndarray:
    """Triangular mel filters over the FFT bins, shape (fft_length // 2 + 1, num_mel_bins).

    Triangles are spaced evenly on the HTK mel scale between ``lower_hz`` and ``upper_hz`` and
    evaluated at each bin's mel value; the DC bin gets no weight (as
    ``tf.signal.linear_to_mel_weight_matrix`` defines them).

    Args:
        config: The front end's settings.

    Returns:
        A read-only float64 matrix.
    """
    bins = config.fft_length // 2 + 1
    freqs = np.linspace(0.0, config.sample_rate / 2, bins)[1:]
    mel = _hz_to_mel(freqs)[:, None]
    edges = np.linspace(_hz_to_mel(np.float64(config.lower_hz)),
                        _hz_to_mel(np.float64(config.upper_hz)), config.num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (mel - lower) / (center - lower)
    falling = (upper - mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    out = np.vstack([np.zeros((1, config.num_mel_bins)), weights])
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=8)
def _dct_matrix(num_mel_bins: int, num_mfcc: int) -> np.ndarray:
    """DCT-II basis scaled like ``mfccs_from_log_mel_spectrograms``: ``2 cos(.) / sqrt(2 N)``."""
    n = np.arange(num_mel_bins)[:, None]
    k = np.arange(num_mfcc)[None, :]
    basis = 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * num_mel_bins))
    out = basis / np.sqrt(2.0 * num_mel_bins)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=8)
def _hann(length: int) -> np.ndarray:
    """Periodic Hann window (``tf.signal.hann_window``'s default)."""
    out = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)
    out.setflags(write=False)
    return out


def fit_window(audio: np.ndarray, samples: int) -> np.ndarray:
    """Zero-pads or cuts the last axis of ``audio`` to ``samples``.

    Args:
        audio: (..., n) samples.
        samples: The wanted length.

    Returns:
        (..., samples), the same dtype.
    """
    n = audio.shape[-1]
    if n >= samples:
        return audio[..., :samples]
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, samples - n)]
    return np.pad(audio, pad)


def mfcc(audio: np.ndarray, config: MfccConfig = MfccConfig(),
         *, batch: int = 128) -> np.ndarray:
    """MFCC features of one or many clips.

    Args:
        audio: Float samples in [-1, 1] (int16 samples are scaled by 1/32768), shape (n,) for
            one clip or (clips, n); each clip is zero-padded or cut to ``config.clip_samples``.
        config: The front end's settings.
        batch: Clips transformed at once (bounds the memory of the FFT).

    Returns:
        float32 features of shape (frames, num_mfcc) = (49, 10) per clip: (49, 10) for one
        clip, (clips, 49, 10) for many.

    Raises:
        BenchInputError: ``audio`` is not 1-D or 2-D real samples, or ``batch`` is below 1.
    """
    x = np.asarray(audio)
    if not isinstance(batch, int) or batch < 1:
        raise BenchInputError(f"mfcc batch must be an integer >= 1, got {batch!r}")
    real = np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    if x.ndim not in (1, 2) or not real or x.shape[-1] == 0:
        raise BenchInputError(f"mfcc needs audio samples of shape (n,) or (clips, n), "
                              f"got {x.dtype} {x.shape}")
    single = x.ndim == 1
    x = x[None] if single else x
    x = x.astype(np.float64) / 32768.0 if x.dtype == np.int16 else x.astype(np.float64)
    x = fit_window(x, config.clip_samples)
    window = _hann(config.frame_length)
    mel = mel_weight_matrix(config)
    dct = _dct_matrix(config.num_mel_bins, config.num_mfcc)
    bins = config.fft_length // 2 + 1
    out = np.empty((len(x), config.num_frames, config.num_mfcc), np.float32)
    for lo in range(0, len(x), batch):
        part = x[lo:lo + batch]
        # Frames as a strided view of the clips (no gather), then one 2-D matmul per batch:
        # about ten times faster than fancy indexing and a batched 3-D matmul.
        frames = np.lib.stride_tricks.sliding_window_view(part, config.frame_length, axis=-1)
        frames = frames[:, ::config.frame_step][:, :config.num_frames] * window
        spectrum = np.abs(np.fft.rfft(frames, n=config.fft_length, axis=-1)).reshape(-1, bins)
        log_mel = np.log(spectrum @ mel + config.log_offset)
        out[lo:lo + batch] = (log_mel @ dct).reshape(len(part), config.num_frames, -1)
    return out[0] if single else out


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """Reads a mono 16-bit PCM WAV file.

    Args:
        path: The file.

    Returns:
        (int16 samples, sample rate).

    Raises:
        BenchInputError: Not a readable mono 16-bit PCM WAV file.
    """
    try:
        with wave.open(path, "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise BenchInputError(f"WAV {path!r} must be mono 16-bit PCM, got "
                                      f"{w.getnchannels()} channels of {8 * w.getsampwidth()} bit")
            return np.frombuffer(w.readframes(w.getnframes()), "<i2").copy(), w.getframerate()
    except (OSError, EOFError, wave.Error) as e:
        raise BenchInputError(f"WAV {path!r} cannot be read: {e}") from e


def main(argv: list[str] | None = None) -> int:
    """Prints the MFCC features of a 16 kHz WAV file (``python -m device_bench.mfcc FILE``)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m device_bench.mfcc FILE.wav", file=sys.stderr)
        return 2
    try:
        samples, rate = read_wav(args[0])
        config = MfccConfig()
        if rate != config.sample_rate:
            raise BenchInputError(f"WAV {args[0]!r} is {rate} Hz; the front end expects "
                                  f"{config.sample_rate} Hz")
    except BenchInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    np.savetxt(sys.stdout, mfcc(samples, config), fmt="%.4f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
