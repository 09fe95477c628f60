"""Speech made on this machine: English voices of the espeak-ng synthesizer, through its CLI.

A *speaker* is an English voice (an accent: ``en-us``, ``en-gb-scotland``, ...) with a voice
variant (``m3``, ``f2``, ``croak``, ``whisper``, ...): ``espeak-ng -v en-us+f2``. One
:func:`synthesize` call speaks a list of words in one espeak-ng process (SSML breaks between
them), splits the audio at the breaks (espeak-ng writes exact zeros there), resamples each word
from espeak-ng's 22050 Hz to 16 kHz and returns the words as float32 arrays in [-1, 1]. When the
split does not give one piece per word, each word is spoken in its own process instead.

espeak-ng is a Debian / Ubuntu package (``apt-get install espeak-ng``, or ``make kws-deps``);
nothing is downloaded at run time. edgekit never installs it by itself: a missing synthesizer is
an :class:`~edgekit.core.errors.InputError` that gives the install command.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.core.errors import InputError

ESPEAK = "espeak-ng"
INSTALL_HINT = "install it with `make kws-deps` (or `sudo apt-get install espeak-ng`)"
SOURCE_RATE = 22050  # espeak-ng's output rate
TARGET_RATE = 16000
BREAK_MS = 300  # pause spoken between words
SPLIT_MIN_ZEROS_S = 0.15  # a run of exact zeros this long separates two words
TIMEOUT_S = 60

# English voices of espeak-ng 1.51 (``espeak-ng --voices=en``, gmw/ files: no MBROLA needed).
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc")

# Voice variants (``espeak-ng --voices=variant``). Training hears only TRAIN_VARIANTS; the
# held-out split speaks with TEST_VARIANTS, so its accuracy is speaker-independent. Both lists
# mix male, female, creaky / breathy and robotic variants.
TRAIN_VARIANTS = (
    "m1", "m2", "m4", "m5", "m6", "m8", "f1", "f3", "croak", "whisper", "klatt", "klatt2",
    "klatt4", "klatt5", "klatt6", "adam", "Alex", "Alicia", "Andrea", "antonio", "aunty",
    "belinda", "benjamin", "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene",
    "gustave", "Henrique", "Hugo", "iven", "iven2", "iven4", "Jacky", "john", "kaukovalta", "Lee",
    "marcelo", "Marco", "Mario", "max", "Michael", "michel", "miguel", "Mike", "Nguyen",
    "pablo", "paul", "pedro", "RicishayMax", "RicishayMax3", "rob", "robert", "robosoft",
    "robosoft2", "robosoft3", "robosoft5", "robosoft6", "robosoft7", "robosoft8", "sandro",
    "shelby", "steph", "steph3", "Storm", "Tweaky", "anika", "AnxiousAndy", "grandma", "grandpa",
)
TEST_VARIANTS = (
    "m3", "m7", "f2", "f4", "f5", "whisperf", "klatt3", "Andy", "Annie", "boris", "Gene2",
    "iven3", "linda", "Mr", "norbert", "quincy", "RicishayMax2", "robosoft4", "steph2",
    "travis", "victor", "zac", "anikaRobot",
)


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an English accent with a voice variant.

    Attributes:
        accent: An espeak-ng English voice, e.g. ``en-gb-scotland``.
        variant: A voice variant, e.g. ``f2`` or ``croak``.
    """

    accent: str
    variant: str

    @property
    def voice(self) -> str:
        """The ``-v`` argument, e.g. ``en-gb-scotland+f2``."""
        return f"{self.accent}+{self.variant}"

    def to_dict(self) -> dict[str, str]:
        """Returns ``{"accent", "variant"}``."""
        return {"accent": self.accent, "variant": self.variant}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> Speaker:
        """Builds a speaker from ``{"accent", "variant"}``.

        Raises:
            InputError: Other keys, or a missing one.
        """
        if set(config) != {"accent", "variant"}:
            raise InputError(f"a speaker needs exactly the keys accent and variant, "
                             f"got {sorted(config)}")
        return cls(str(config["accent"]), str(config["variant"]))


def espeak_path() -> str:
    """The espeak-ng program.

    Returns:
        Its path.

    Raises:
        InputError: espeak-ng is not installed (the message gives the install command).
    """
    path = shutil.which(ESPEAK)
    if path is None:
        raise InputError(f"the keyword-spotting data set is spoken by {ESPEAK}, which is not "
                         f"installed; {INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=4)
def espeak_version(path: str | None = None) -> str:
    """espeak-ng's version, e.g. ``1.51`` (part of the data set's cache key).

    Args:
        path: The program (default: :func:`espeak_path`).

    Returns:
        The version number.

    Raises:
        InputError: espeak-ng is missing or does not answer ``--version``.
    """
    exe = path or espeak_path()
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    found = re.search(r"text-to-speech:\s*([0-9][^\s]*)", proc.stdout)
    if proc.returncode != 0 or found is None:
        raise InputError(f"{exe} --version did not print a version (exit {proc.returncode}): "
                         f"{(proc.stdout + proc.stderr).strip()[:200]!r}")
    return found.group(1)


@functools.lru_cache(maxsize=4)
def installed_voices(path: str | None = None) -> tuple[frozenset[str], frozenset[str]]:
    """The English accents and the voice variants this espeak-ng has.

    Args:
        path: The program (default: :func:`espeak_path`).

    Returns:
        (accents, variants): language names of ``--voices=en`` and variant file names of
        ``--voices=variant`` (``!v/f2`` -> ``f2``).
    """
    exe = path or espeak_path()

    def listing(arg: str) -> list[list[str]]:
        proc = subprocess.run([exe, arg], capture_output=True, text=True, timeout=TIMEOUT_S,
                              check=False)
        return [line.split() for line in proc.stdout.splitlines()[1:] if line.strip()]

    accents = frozenset(cols[1] for cols in listing("--voices=en")
                        if len(cols) >= 5 and cols[4].startswith("gmw/"))
    variants = frozenset(cols[4].split("/", 1)[1] for cols in listing("--voices=variant")
                         if len(cols) >= 5 and cols[4].startswith("!v/"))
    return accents, variants


def check_speakers(speakers: Sequence[Speaker], path: str | None = None) -> None:
    """Checks that espeak-ng has every accent and variant of ``speakers``.

    Raises:
        InputError: Some are missing (the message lists them and what is installed).
    """
    accents, variants = installed_voices(path)
    bad_a = sorted({s.accent for s in speakers} - accents)
    bad_v = sorted({s.variant for s in speakers} - variants)
    if bad_a or bad_v:
        raise InputError(f"espeak-ng {espeak_version(path)} lacks accents {bad_a} / variants "
                         f"{bad_v}; installed accents: {sorted(accents)}")


def _pcm(stdout: bytes, voice: str) -> np.ndarray:
    """The samples of espeak-ng's ``--stdout`` WAV (a streamed header: sizes are not set)."""
    start = stdout.find(b"data")
    if not stdout.startswith(b"RIFF") or start < 0:
        raise InputError(f"espeak-ng voice {voice!r} wrote no WAV audio ({len(stdout)} bytes)")
    body = stdout[start + 8:]
    return np.frombuffer(body[: len(body) // 2 * 2], "<i2")


def _run(cmd: list[str], voice: str) -> np.ndarray:
    proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise InputError(f"espeak-ng voice {voice!r} failed (exit {proc.returncode}): "
                         f"{proc.stderr.decode(errors='replace').strip()[:200]}")
    return _pcm(proc.stdout, voice)


def split_at_zeros(pcm: np.ndarray, min_zeros: int) -> list[np.ndarray]:
    """Cuts audio at runs of at least ``min_zeros`` exact zeros; drops the runs themselves.

    Args:
        pcm: int16 samples.
        min_zeros: The shortest run that separates two pieces.

    Returns:
        The non-silent pieces, in order (leading and trailing zeros of each piece trimmed).
    """
    nonzero = np.flatnonzero(pcm != 0)
    if len(nonzero) == 0:
        return []
    gaps = np.flatnonzero(np.diff(nonzero) > min_zeros)
    starts = np.r_[nonzero[0], nonzero[gaps + 1]]
    ends = np.r_[nonzero[gaps], nonzero[-1]] + 1
    return [pcm[a:b] for a, b in zip(starts, ends, strict=True)]


def _to_16k(pcm: np.ndarray) -> np.ndarray:
    from scipy.signal import resample_poly

    x = pcm.astype(np.float64) / 32768.0
    return np.clip(resample_poly(x, 320, 441), -1.0, 1.0).astype(np.float32)


def synthesize(words: Sequence[str], speaker: Speaker, *, rate: int, pitch: int,
               path: str | None = None) -> list[np.ndarray]:
    """Speaks ``words`` with one speaker at one rate and pitch.

    Args:
        words: Single words (letters only).
        speaker: The voice.
        rate: Words per minute (espeak-ng ``-s``, 80..450).
        pitch: Base pitch (espeak-ng ``-p``, 0..99).
        path: The espeak-ng program (default: :func:`espeak_path`).

    Returns:
        One float32 array per word: 16 kHz samples in [-1, 1], silence trimmed.

    Raises:
        InputError: A word is not letters, rate or pitch out of range, or espeak-ng fails or
            produces no sound for a word.
    """
    bad = [w for w in words if not re.fullmatch(r"[A-Za-z]+", w)]
    if bad or not words:
        raise InputError(f"synthesize needs single words of letters, got {list(words)}")
    if not 80 <= rate <= 450 or not 0 <= pitch <= 99:
        raise InputError(f"espeak-ng rate must be in [80, 450] and pitch in [0, 99], "
                         f"got {rate}, {pitch}")
    exe = path or espeak_path()
    base = [exe, "-v", speaker.voice, "-s", str(int(rate)), "-p", str(int(pitch)), "--stdout"]
    pieces: list[np.ndarray] = []
    if len(words) > 1:
        ssml = "<speak>" + f' <break time="{BREAK_MS}ms"/> '.join(words) + "</speak>"
        pcm = _run([*base, "-m", ssml], speaker.voice)
        pieces = split_at_zeros(pcm, int(SPLIT_MIN_ZEROS_S * SOURCE_RATE))
    if len(pieces) != len(words):  # one process per word
        pieces = []
        for word in words:
            found = split_at_zeros(_run([*base, word], speaker.voice), 1)
            if not found:
                raise InputError(f"espeak-ng voice {speaker.voice!r} said nothing for {word!r}")
            pieces.append(np.concatenate(found) if len(found) > 1 else found[0])
            # a word's own internal pauses are kept out: joined pieces, as spoken
    return [_to_16k(p) for p in pieces]
