"""The keyword-spotting set (edgekit.data.kws): real espeak-ng speech, real MFCC, real mixing.

espeak-ng is installed with apt-get when missing (CI=true: a failed install fails).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from apt_packages import ensure_program

from edgekit.core.errors import InputError
from edgekit.data.kws import (
    CLASS_NAMES,
    KEYWORDS,
    UNKNOWN_WORDS,
    KwsSettings,
    cache_key,
    generate,
    load_arrays,
    mix_word,
    save_npz,
    silence_clip,
)

# Two accents x three training voices, two held-out voices: 6 + 4 takes of 12 clips.
SMALL = KwsSettings(accents=("en-us", "en-gb"), train_variants=("m1", "f1", "croak"),
                    test_variants=("m3", "f2"), takes=1, test_takes=1)


@pytest.fixture(scope="module")
def espeak() -> str:
    return ensure_program("espeak-ng", "espeak-ng")


@pytest.fixture(scope="module")
def small(espeak):
    return generate(SMALL, progress=False)


def _rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def test_shapes_classes_and_balance(small) -> None:
    assert small.x_train.shape == (6 * 12, 49, 10, 1) and small.x_test.shape == (4 * 12, 49, 10, 1)
    assert small.x_train.dtype == np.float32 and np.isfinite(small.x_train).all()
    assert CLASS_NAMES[-2:] == ("silence", "unknown") and CLASS_NAMES[:10] == KEYWORDS
    # Every take says every class once.
    assert np.bincount(small.y_train, minlength=12).tolist() == [6] * 12
    assert np.bincount(small.y_test, minlength=12).tolist() == [4] * 12
    assert not set(UNKNOWN_WORDS) & set(KEYWORDS)


def test_same_seed_same_data_whatever_the_thread_count(small, espeak) -> None:
    again = generate(SMALL, progress=False, workers=1)
    for name in ("x_train", "y_train", "speaker_train", "x_test", "y_test"):
        assert np.array_equal(getattr(small, name), getattr(again, name)), name
    other = generate(dataclasses.replace(SMALL, seed=1), progress=False)
    assert not np.array_equal(small.x_train, other.x_train)


def test_held_out_speakers_are_never_in_training(small) -> None:
    train_voices = {small.speakers_train[i] for i in small.speaker_train}
    test_voices = {small.speakers_test[i] for i in small.speaker_test}
    assert len(train_voices) == 6 and len(test_voices) == 4
    train_variants = {v.split("+")[1] for v in train_voices}
    test_variants = {v.split("+")[1] for v in test_voices}
    assert train_variants == {"m1", "f1", "croak"} and test_variants == {"m3", "f2"}
    # The default set keeps them apart too, and settings that mix them are refused.
    default = KwsSettings()
    assert not set(default.train_variants) & set(default.test_variants)
    with pytest.raises(InputError, match=r"also in train_variants: \['f1'\]"):
        dataclasses.replace(SMALL, test_variants=("f1", "f2"))


def test_features_are_standardized_with_the_training_statistics(small) -> None:
    per_coefficient = small.x_train[..., 0].transpose(2, 0, 1).reshape(10, -1)
    assert np.allclose(per_coefficient.mean(axis=1), 0, atol=1e-3)
    assert np.allclose(per_coefficient.std(axis=1), 1, atol=1e-3)
    assert len(small.meta["feature_mean"]) == 10 and min(small.meta["feature_std"]) > 0
    # The held-out split uses the training split's statistics, not its own.
    assert not np.allclose(small.x_test[..., 0].mean(axis=(0, 1)), 0, atol=1e-3)


def test_a_clip_holds_the_word_at_the_drawn_level_and_snr() -> None:
    word = np.sin(np.linspace(0, 400 * np.pi, 8000)).astype(np.float32) * 0.3
    pool = [word]
    quiet = dataclasses.replace(SMALL, noise_probability=0.0, peak_dbfs=(-6.0, -6.0))
    noisy = dataclasses.replace(quiet, noise_probability=1.0, snr_db=(10.0, 10.0),
                                babble_share=0.0)
    for seed in range(5):
        clean = mix_word(word, np.random.default_rng(seed), quiet, pool)
        mixed = mix_word(word, np.random.default_rng(seed), noisy, pool)
        assert clean.shape == (16000,) and np.count_nonzero(clean) >= 7990
        assert abs(20 * np.log10(np.abs(clean).max()) + 6.0) < 0.01
        speech = clean[clean != 0]
        noise = mixed - clean
        assert abs(_rms_db(speech) - _rms_db(noise) - 10.0) < 0.2
    # A word longer than the window is cut to it.
    assert mix_word(np.ones(20000, np.float32) * 0.1, np.random.default_rng(0), quiet,
                    pool).shape == (16000,)


def test_silence_is_noise_at_the_drawn_level() -> None:
    flat = dataclasses.replace(SMALL, silence_dbfs=(-40.0, -40.0), babble_share=0.0)
    levels = [_rms_db(silence_clip(np.random.default_rng(s), flat, [])) for s in range(5)]
    assert all(abs(level + 40.0) < 0.1 for level in levels)


def test_settings_round_trip_and_name_bad_values() -> None:
    assert KwsSettings.from_dict(json.loads(json.dumps(SMALL.to_dict()))) == SMALL
    with pytest.raises(InputError, match=r"unknown key\(s\) \['speed'\] in kws settings"):
        KwsSettings.from_dict({"speed": 2})
    with pytest.raises(InputError, match="snr_db must be a range"):
        KwsSettings(snr_db=(20.0, 0.0))
    with pytest.raises(InputError, match="takes and test_takes must be >= 1"):
        KwsSettings(takes=0)


def test_cached_on_first_use_keyed_on_the_settings(tmp_path, small, espeak) -> None:
    first, path, cached = load_arrays(SMALL, progress=False, cache=tmp_path)
    assert np.array_equal(first.x_test, small.x_test)
    assert cached is False and path.name == f"{cache_key(SMALL)}.npz" and path.is_file()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["settings"] == SMALL.to_dict() and meta["espeak_ng"]
    again, _, cached = load_arrays(SMALL, progress=False, cache=tmp_path)
    assert cached is True and np.array_equal(again.x_train, small.x_train)
    assert cache_key(dataclasses.replace(SMALL, seed=3)) != cache_key(SMALL)
    # Asking for the audio makes the set again (the audio is not cached), to the same arrays.
    with_audio, _, cached = load_arrays(SMALL, progress=False, cache=tmp_path,
                                        wav_dir=tmp_path / "wav")
    assert cached is False and np.array_equal(with_audio.x_train, small.x_train)
    assert len(list((tmp_path / "wav").rglob("*.wav"))) == len(small.y_train) + len(small.y_test)
    path.write_bytes(b"not an npz")  # a damaged cache file is made again
    _, _, cached = load_arrays(SMALL, progress=False, cache=tmp_path)
    assert cached is False and np.array_equal(np.load(path)["x_train"], small.x_train)


def test_npz_and_wavs_can_be_read_back(tmp_path, small, espeak) -> None:
    from device_bench.mfcc import mfcc, read_wav
    from edgekit.data import load_npz

    out = save_npz(small, tmp_path / "kws.npz")
    ds = load_npz(out)
    assert len(ds.x_train) + len(ds.x_test) == len(small.y_train) + len(small.y_test)
    arrays = generate(SMALL, progress=False, wav_dir=tmp_path / "wav")
    assert np.array_equal(arrays.x_train, small.x_train)
    wavs = sorted((tmp_path / "wav").rglob("*.wav"))
    assert len(wavs) == len(small.y_train) + len(small.y_test)
    yes = sorted((tmp_path / "wav" / "train" / "yes").glob("*.wav"))[0]
    samples, rate = read_wav(str(yes))
    assert rate == 16000 and len(samples) == 16000
    # Its features are the clip's, before standardizing, up to the WAV's 16-bit rounding: that
    # rounding noise fills mel bands the clean speech leaves almost empty, where log(e + 1e-6)
    # is steep, so a few coefficients move; another clip would differ everywhere.
    mean = np.asarray(small.meta["feature_mean"])
    std = np.asarray(small.meta["feature_std"])
    voice = yes.stem.rsplit("_", 1)[0].replace("_", "+")
    row = np.flatnonzero((np.asarray(small.speakers_train)[small.speaker_train] == voice)
                         & (small.y_train == CLASS_NAMES.index("yes")))[0]
    rebuilt = (mfcc(samples) - mean) / std
    error = np.abs(rebuilt - small.x_train[row, ..., 0])
    assert np.median(error) < 0.01 and np.mean(error < 0.05) > 0.9
    other = small.x_train[row + 1, ..., 0]  # the same voice's next word
    assert np.median(np.abs(rebuilt - other)) > 0.1


@pytest.fixture(scope="module")
def default_set(espeak):
    """The default set, from the user's cache (made there on first use: about 75 s)."""
    from edgekit.data import load_kws

    return load_kws(progress=False)


def test_the_default_set_holds_out_speakers_and_balances_classes(default_set) -> None:
    ds = default_set
    assert ds.name == "kws" and ds.class_names == CLASS_NAMES and ds.num_classes == 12
    assert ds.sample_shape == (49, 10, 1)
    default = KwsSettings()
    speakers = len(default.accents) * len(default.train_variants)
    held_out = len(default.accents) * len(default.test_variants)
    assert speakers >= 500 and held_out >= 150  # many voices, not a handful
    assert len(ds.y_train) == speakers * default.takes * 12
    assert set(np.bincount(ds.y_test).tolist()) == {held_out * default.test_takes}
    assert not set(ds.train_indices) & set(ds.heldout_indices)


def test_a_recipe_on_kws_trains_converts_and_reports(tmp_path, default_set) -> None:
    import edgekit

    recipe = {"model": "tiny_cnn", "data": "kws", "train": {"epochs": 1, "augment_shift": 0},
              "stages": [],
              "convert": {"mode": "int8", "io": "int8", "float32_baseline": False,
                          "calibration_samples": 50},
              "bench": {"targets": ["local"], "runs": 5, "warmup": 1, "min_seconds": 0}}
    outcome = edgekit.run(recipe, tmp_path / "run")
    report = outcome.report
    assert report["data"]["name"] == "kws" and report["data"]["class_names"] == list(CLASS_NAMES)
    assert report["data"]["heldout_samples"] == len(default_set.y_test)
    final = report["final"]
    assert final["full_integer"] is True
    assert final["accuracy"] > 3 / 12  # one epoch already beats chance (1/12) well


def test_cli_writes_the_set_and_names_a_bad_output(tmp_path, default_set, capsys) -> None:
    from edgekit.cli import main

    out = tmp_path / "kws.npz"
    assert main(["data", "kws", "--out", str(out)]) == 0
    assert "from the cache" in capsys.readouterr().out
    with np.load(out) as z:
        assert z["x"].shape == (len(default_set.y_train) + len(default_set.y_test), 49, 10, 1)
        assert np.array_equal(z["y_test"], default_set.y_test)
        assert json.loads(str(z["meta"]))["settings"] == KwsSettings().to_dict()
    assert main(["data", "kws", "--out", str(tmp_path / "kws.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edgekit: error: --out {str(tmp_path / 'kws.txt')!r}: expected a file name "
                   "ending in .npz"]
