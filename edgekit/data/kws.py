"""Keyword spotting from speech made on this machine: the ``kws`` data set.

The twelve classes of MLPerf Tiny's KWS benchmark (Speech Commands v2's ten keywords, plus
``silence`` and ``unknown``), spoken by the espeak-ng synthesizer (:mod:`edgekit.data.kws_synth`)
and turned into the 49x10 MFCC features of :mod:`device_bench.mfcc` (the same function a
deployed keyword spotter runs on the device).

How one clip is made (everything drawn from a seeded generator per speaker and take, so the
same settings give the same bytes, whatever the thread count):

- a *speaker* is an English accent with a voice variant; each speaker says every keyword and
  one unknown word per *take*, each take at its own speaking rate and pitch;
- the word is placed at a random time inside the 1-second window (cut when it is longer),
  scaled to a random peak level, and, with ``noise_probability``, mixed with background noise
  at a random SNR: coloured noise (white, pink or brown) or *babble* (other words of the same
  split, several at once);
- a ``silence`` clip is background noise alone, at a random level.

**Held-out speakers**: the test split speaks with voice variants (``test_variants``) that the
training split never hears, so its accuracy is speaker-independent.

Generated once and cached under the user's cache folder (``$EDGEKIT_CACHE``, else
``$XDG_CACHE_HOME/edgekit``, else ``~/.cache/edgekit``) in ``kws/<key>.npz`` with the settings
beside it as ``<key>.json``; the key hashes the generator's version, its settings, the MFCC
settings and espeak-ng's version.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device_bench.atomicio import atomic_target, write_json
from device_bench.mfcc import MfccConfig, mfcc
from edgekit.core.checks import check_keys
from edgekit.core.errors import InputError
from edgekit.data.kws_synth import (
    ACCENTS,
    TARGET_RATE,
    TEST_VARIANTS,
    TRAIN_VARIANTS,
    Speaker,
    check_speakers,
    espeak_path,
    espeak_version,
    synthesize,
)

__all__ = ["CLASS_NAMES", "GENERATOR_VERSION", "KEYWORDS", "KWS", "UNKNOWN_WORDS", "KwsArrays",
           "KwsSettings", "cache_key", "cache_root", "generate", "load_arrays",
           "mix_word", "save_npz", "silence_clip"]

KWS = "kws"
GENERATOR_VERSION = 1  # bump when the same settings would make different data

KEYWORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
SILENCE, UNKNOWN = "silence", "unknown"
CLASS_NAMES = (*KEYWORDS, SILENCE, UNKNOWN)  # MLPerf Tiny KWS's label order

# Other English words for the unknown class: Speech Commands' auxiliary words and a few more.
# Words that hold a keyword whole ("ago", "upon", "gone") are left out: cut short or masked by
# noise they *are* the keyword, which makes the label wrong rather than the task hard.
UNKNOWN_WORDS = (
    "bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine",
    "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero", "backward",
    "forward", "follow", "learn", "visual", "yet", "water", "little", "table", "green",
    "music", "paper", "window", "morning", "number",
)

NOISES = ("white", "pink", "brown", "babble")
_NOISE_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power ~ 1 / f^exponent
BABBLE_POOL_WORDS = 240  # words per split that babble is made of
BABBLE_VOICES = (8, 16)  # words in one babble clip: a crowd, not a few words one could pick out


@dataclass(frozen=True)
class KwsSettings:
    """What the generator makes (every field is part of the cache key).

    Attributes:
        seed: Seed of every draw.
        takes: Takes per training speaker (each: every keyword, one unknown word, one silence).
        test_takes: Takes per held-out speaker.
        accents: espeak-ng English voices (both splits).
        train_variants: Voice variants of the training speakers.
        test_variants: Voice variants of the held-out speakers (never in training).
        rate_wpm: Speaking rate range, words per minute.
        pitch: espeak-ng base pitch range (0..99).
        peak_dbfs: Range of the speech's peak level, dB below full scale.
        snr_db: Range of the speech-to-noise ratio of noisy clips.
        noise_probability: Share of word clips with background noise.
        babble_share: Share of the noisy clips whose noise is babble (the rest coloured).
        silence_dbfs: Range of a silence clip's noise level (RMS, dB below full scale).
    """

    seed: int = 0
    takes: int = 3
    test_takes: int = 1
    accents: tuple[str, ...] = ACCENTS
    train_variants: tuple[str, ...] = TRAIN_VARIANTS
    test_variants: tuple[str, ...] = TEST_VARIANTS
    rate_wpm: tuple[int, int] = (120, 240)
    pitch: tuple[int, int] = (15, 85)
    peak_dbfs: tuple[float, float] = (-24.0, -1.0)
    snr_db: tuple[float, float] = (5.0, 25.0)
    noise_probability: float = 0.7
    babble_share: float = 0.3
    silence_dbfs: tuple[float, float] = (-70.0, -30.0)

    def __post_init__(self) -> None:
        for name in ("rate_wpm", "pitch", "peak_dbfs", "snr_db", "silence_dbfs"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not lo_hi[0] <= lo_hi[1]:
                raise InputError(f"kws setting {name} must be a range [low, high], got {lo_hi}")
        if self.takes < 1 or self.test_takes < 1:
            raise InputError(f"kws takes and test_takes must be >= 1, got {self.takes}, "
                             f"{self.test_takes}")
        for name in ("noise_probability", "babble_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"kws setting {name} must be in [0, 1], got "
                                 f"{getattr(self, name)}")
        shared = sorted(set(self.train_variants) & set(self.test_variants))
        if shared:
            raise InputError(f"kws test_variants must be voices training never hears; "
                             f"also in train_variants: {shared}")
        if not self.accents or not self.train_variants or not self.test_variants:
            raise InputError("kws accents, train_variants and test_variants must not be empty")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, config: Any) -> KwsSettings:
        """Builds settings from a mapping.

        Raises:
            InputError: Unknown keys (the known ones are listed) or bad values.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        check_keys(config, names, "kws settings")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})

    def speakers(self, split: str) -> list[Speaker]:
        """The speakers of ``split`` (``train`` or ``test``), accent-major."""
        variants = self.train_variants if split == "train" else self.test_variants
        return [Speaker(a, v) for a in self.accents for v in variants]


@dataclass(frozen=True)
class KwsArrays:
    """The generated set.

    Attributes:
        x_train: MFCC features (N, 49, 10, 1), float32, each coefficient standardized with
            the training split's mean and std (``meta["feature_mean"]``, ``["feature_std"]``).
        y_train: Labels (index into :data:`CLASS_NAMES`).
        speaker_train: Each sample's speaker (index into ``speakers_train``).
        x_test: Held-out features.
        y_test: Held-out labels.
        speaker_test: Each held-out sample's speaker (index into ``speakers_test``).
        speakers_train: The training speakers' voices (``en-us+m1``...).
        speakers_test: The held-out speakers' voices.
        meta: Settings, versions and counts (saved beside the data).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    speaker_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    speaker_test: np.ndarray
    speakers_train: tuple[str, ...]
    speakers_test: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)


def cache_root() -> Path:
    """Where edgekit caches what it makes: ``$EDGEKIT_CACHE``, ``$XDG_CACHE_HOME/edgekit`` or
    ``~/.cache/edgekit``."""
    if os.environ.get("EDGEKIT_CACHE"):
        return Path(os.environ["EDGEKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgekit"


def _key_payload(settings: KwsSettings, mfcc_config: MfccConfig) -> dict[str, Any]:
    return {"generator": GENERATOR_VERSION, "unknown_words": list(UNKNOWN_WORDS),
            "settings": settings.to_dict(),
            "mfcc": mfcc_config.to_dict(), "espeak_ng": espeak_version()}


def cache_key(settings: KwsSettings, mfcc_config: MfccConfig | None = None) -> str:
    """The cache key of a data set: a hash of what determines its bytes."""
    text = json.dumps(_key_payload(settings, mfcc_config or MfccConfig()), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------------------------
# Mixing


def _coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise whose power falls as 1 / f^exponent, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    noise = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def _babble(rng: np.random.Generator, n: int, pool: Sequence[np.ndarray]) -> np.ndarray:
    """Many words of ``pool`` at once, spread over the clip at random levels, unit RMS.

    Enough of them overlap that no single one stands out as the clip's word (a crowd, as in
    the babble noise of speech corpora).
    """
    out = np.zeros(n)
    for _ in range(int(rng.integers(BABBLE_VOICES[0], BABBLE_VOICES[1] + 1))):
        word = pool[int(rng.integers(len(pool)))][:n]
        start = int(rng.integers(-len(word) // 2, n - len(word) // 2))
        lo, hi = max(start, 0), min(start + len(word), n)
        out[lo:hi] += word[lo - start:hi - start] * 10 ** (rng.uniform(-6, 0) / 20)
    rms = np.sqrt(np.mean(out ** 2))
    return out / rms if rms > 0 else _coloured_noise(rng, n, 1.0)


def _noise(rng: np.random.Generator, n: int, kind: str, pool: Sequence[np.ndarray]) -> np.ndarray:
    return _babble(rng, n, pool) if kind == "babble" else _coloured_noise(
        rng, n, _NOISE_EXPONENT[kind])


def _noise_kind(rng: np.random.Generator, settings: KwsSettings) -> str:
    if rng.random() < settings.babble_share:
        return "babble"
    return ("white", "pink", "brown")[int(rng.integers(3))]


def mix_word(word: np.ndarray, rng: np.random.Generator, settings: KwsSettings,
             pool: Sequence[np.ndarray], samples: int = TARGET_RATE) -> np.ndarray:
    """One clip of a spoken word: shifted, scaled and (maybe) noisy.

    Args:
        word: The word's 16 kHz samples (silence trimmed).
        rng: The clip's generator.
        settings: The ranges drawn from.
        pool: Words the babble is made of.
        samples: Clip length.

    Returns:
        float32 samples in [-1, 1], length ``samples``.
    """
    if len(word) > samples:  # cut a random window of an over-long word
        start = int(rng.integers(0, len(word) - samples + 1))
        word = word[start:start + samples]
    clip = np.zeros(samples)
    offset = int(rng.integers(0, samples - len(word) + 1))
    peak = np.max(np.abs(word)) or 1.0
    level = 10 ** (rng.uniform(*settings.peak_dbfs) / 20)
    speech = word.astype(np.float64) * (level / peak)
    clip[offset:offset + len(word)] = speech
    if rng.random() < settings.noise_probability:
        kind = _noise_kind(rng, settings)
        speech_rms = np.sqrt(np.mean(speech ** 2))
        snr = rng.uniform(*settings.snr_db)
        clip += _noise(rng, samples, kind, pool) * speech_rms * 10 ** (-snr / 20)
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


def silence_clip(rng: np.random.Generator, settings: KwsSettings, pool: Sequence[np.ndarray],
                 samples: int = TARGET_RATE) -> np.ndarray:
    """A ``silence`` clip: background noise alone, at a random level."""
    level = 10 ** (rng.uniform(*settings.silence_dbfs) / 20)
    noise = _noise(rng, samples, _noise_kind(rng, settings), pool) * level
    return np.clip(noise, -1.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Generation

_SPLITS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class _Take:
    split: str
    speaker_index: int
    speaker: Speaker
    take: int

    def rng(self, seed: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([seed, _SPLITS[self.split], self.speaker_index, self.take,
                                      stream])


def _takes(settings: KwsSettings, split: str) -> list[_Take]:
    count = settings.takes if split == "train" else settings.test_takes
    return [_Take(split, i, s, t) for i, s in enumerate(settings.speakers(split))
            for t in range(count)]


def _speak(take: _Take, settings: KwsSettings, exe: str) -> list[np.ndarray]:
    """The take's words: every keyword, then one unknown word."""
    rng = take.rng(settings.seed, 0)
    rate = int(rng.integers(settings.rate_wpm[0], settings.rate_wpm[1] + 1))
    pitch = int(rng.integers(settings.pitch[0], settings.pitch[1] + 1))
    unknown = UNKNOWN_WORDS[int(rng.integers(len(UNKNOWN_WORDS)))]
    return synthesize([*KEYWORDS, unknown], take.speaker, rate=rate, pitch=pitch, path=exe)


def _babble_pool(settings: KwsSettings, split: str, exe: str) -> list[np.ndarray]:
    """Words of ``split``'s own speakers (so test babble never carries a training voice)."""
    rng = np.random.default_rng([settings.seed, _SPLITS[split], 1 << 20])
    speakers = settings.speakers(split)
    pool: list[np.ndarray] = []
    while len(pool) < BABBLE_POOL_WORDS:
        speaker = speakers[int(rng.integers(len(speakers)))]
        words = [UNKNOWN_WORDS[int(i)] for i in rng.integers(len(UNKNOWN_WORDS), size=8)]
        pool += synthesize(words, speaker, rate=int(rng.integers(140, 220)),
                           pitch=int(rng.integers(20, 80)), path=exe)
    return pool[:BABBLE_POOL_WORDS]


def _make_take(take: _Take, settings: KwsSettings, exe: str,
               pool: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """The clips of one take (every keyword, one unknown word, one silence) and their labels."""
    words = _speak(take, settings, exe)
    rng = take.rng(settings.seed, 1)
    clips = [mix_word(w, rng, settings, pool) for w in words]
    clips.append(silence_clip(rng, settings, pool))
    labels = [*range(len(KEYWORDS)), CLASS_NAMES.index(UNKNOWN), CLASS_NAMES.index(SILENCE)]
    return clips, labels


def _split_clips(settings: KwsSettings, split: str, exe: str, workers: int,
                 step: Callable[[int], Any]) -> Iterator[tuple[_Take, list[np.ndarray], list[int]]]:
    """Yields, per take in order, its clips and their labels."""
    pool = _babble_pool(settings, split, exe)
    takes = _takes(settings, split)
    chunk = 8 * workers  # bounds the audio held in memory
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
        # espeak-ng runs in its own process and numpy's FFTs release the GIL: threads overlap
        # them; every take draws from its own generator, so the thread count changes nothing.
        for lo in range(0, len(takes), chunk):
            part = takes[lo:lo + chunk]
            made = ex.map(lambda t: _make_take(t, settings, exe, pool), part)
            for take, (clips, labels) in zip(part, made, strict=True):
                step(1)
                yield take, clips, labels


def _write_wavs(root: Path, take: _Take, clips: Sequence[np.ndarray],
                labels: Sequence[int]) -> None:
    for clip, label in zip(clips, labels, strict=True):
        folder = root / take.split / CLASS_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{take.speaker.voice.replace('+', '_')}_{take.take}.wav"
        with atomic_target(path) as tmp, wave.open(tmp, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(TARGET_RATE)
            w.writeframes((np.clip(clip, -1, 1) * 32767).astype("<i2").tobytes())


def generate(settings: KwsSettings = KwsSettings(), *,
             wav_dir: str | os.PathLike[str] | None = None, progress: bool = True,
             workers: int | None = None) -> KwsArrays:
    """Makes the data set (no cache: see :func:`load_arrays`).

    Args:
        settings: What to make.
        wav_dir: Also write every clip as ``DIR/<split>/<class>/<voice>_<take>.wav``.
        progress: Show a progress bar (on a terminal).
        workers: Threads that run espeak-ng (default: the CPU count).

    Returns:
        The arrays.

    Raises:
        InputError: espeak-ng is missing (the message says how to install it) or lacks a voice.
    """
    from tqdm import tqdm

    exe = espeak_path()
    check_speakers(settings.speakers("train") + settings.speakers("test"), exe)
    config = MfccConfig()
    total = len(_takes(settings, "train")) + len(_takes(settings, "test"))
    out: dict[str, Any] = {}
    with tqdm(total=total, desc="kws: speaking", unit="take", disable=not progress or None,
              leave=False) as bar:
        for split in _SPLITS:
            feats, labels, speakers = [], [], []
            for take, clips, ys in _split_clips(settings, split, exe, workers or os.cpu_count()
                                                or 1, bar.update):
                if wav_dir is not None:
                    _write_wavs(Path(wav_dir), take, clips, ys)
                feats.append(mfcc(np.stack(clips), config))
                labels += ys
                speakers += [take.speaker_index] * len(ys)
            out[split] = (np.concatenate(feats)[..., None], np.asarray(labels, np.int64),
                          np.asarray(speakers, np.int32))
    # Standardize each coefficient with the training split's statistics: c0 (log energy) spans
    # ~100 while the others span ~5, and full-int8 input quantization has one scale for all.
    # A deployed model applies the same (meta["feature_mean"], meta["feature_std"]).
    mean = np.round(out["train"][0].mean(axis=(0, 1, 3), dtype=np.float64), 6)
    std = np.round(out["train"][0].std(axis=(0, 1, 3), dtype=np.float64), 6) + 1e-6
    for split, (x, y, who) in out.items():
        out[split] = (((x - mean[:, None]) / std[:, None]).astype(np.float32), y, who)
    meta = {**_key_payload(settings, config), "class_names": list(CLASS_NAMES),
            "train_samples": len(out["train"][1]), "test_samples": len(out["test"][1]),
            "feature_mean": mean.tolist(), "feature_std": std.tolist()}
    return KwsArrays(*out["train"][:2], out["train"][2], *out["test"][:2], out["test"][2],
                     tuple(s.voice for s in settings.speakers("train")),
                     tuple(s.voice for s in settings.speakers("test")), meta)


def save_npz(arrays: KwsArrays, path: str | os.PathLike[str], *, with_xy: bool = True) -> Path:
    """Writes the arrays as one ``.npz`` (atomically), settings included as JSON text.

    ``x``/``y`` hold every sample (training first), so ``--data FILE.npz`` reads it too (with
    its own random split); ``x_train``... keep the speaker split.

    Args:
        arrays: The data set.
        path: The ``.npz`` to write.
        with_xy: Also write ``x``/``y`` (the cache leaves them out: half the size).

    Returns:
        The path.
    """
    dest = Path(path)
    both = ({"x": np.concatenate([arrays.x_train, arrays.x_test]),
             "y": np.concatenate([arrays.y_train, arrays.y_test])} if with_xy else {})
    with atomic_target(dest) as tmp, open(tmp, "wb") as f:
        np.savez(f, **both,
                 x_train=arrays.x_train, y_train=arrays.y_train,
                 speaker_train=arrays.speaker_train, x_test=arrays.x_test,
                 y_test=arrays.y_test, speaker_test=arrays.speaker_test,
                 speakers_train=np.asarray(arrays.speakers_train),
                 speakers_test=np.asarray(arrays.speakers_test),
                 class_names=np.asarray(CLASS_NAMES), meta=np.asarray(json.dumps(arrays.meta)))
    return dest


def _read_npz(path: Path) -> KwsArrays | None:
    """The arrays of a cached file, or None when it is unreadable (then it is made again)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return KwsArrays(z["x_train"], z["y_train"], z["speaker_train"], z["x_test"],
                             z["y_test"], z["speaker_test"], tuple(z["speakers_train"].tolist()),
                             tuple(z["speakers_test"].tolist()), json.loads(str(z["meta"])))
    except (OSError, ValueError, KeyError):
        return None


def load_arrays(settings: KwsSettings = KwsSettings(), *, progress: bool = True,
                cache: str | os.PathLike[str] | None = None,
                wav_dir: str | os.PathLike[str] | None = None) -> tuple[KwsArrays, Path, bool]:
    """The data set from the cache, made (and cached) on first use.

    Args:
        settings: What to make.
        progress: Show a progress bar while it is made.
        cache: The cache folder (default: :func:`cache_root`).
        wav_dir: Also write every clip as a WAV file (see :func:`generate`). The audio is not
            cached, so the set is made again (once), and cached when it was not yet.

    Returns:
        (arrays, the cached file, whether they came from the cache rather than being made).

    Raises:
        InputError: espeak-ng is missing or lacks a voice, or the cache cannot be written.
    """
    key = cache_key(settings)
    folder = Path(cache) if cache is not None else cache_root() / KWS
    path = folder / f"{key}.npz"
    found = _read_npz(path) if path.is_file() else None
    if found is not None and wav_dir is None:
        return found, path, True
    arrays = generate(settings, progress=progress, wav_dir=wav_dir)
    if found is not None:  # made again for its audio; the cached file stays as it was
        return arrays, path, False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        save_npz(arrays, path, with_xy=False)
        write_json(folder / f"{key}.json", arrays.meta)
    except OSError as e:
        raise InputError(f"kws cache {str(folder)!r} cannot be written: {e}") from e
    return arrays, path, False
