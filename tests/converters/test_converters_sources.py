"""Calibration sources: arrays and array files, image folders, streams, multi-input models.

Conversions here are real (TFLite converter + LiteRT interpreter); the multi-input test checks
that each input was calibrated on its own data by reading the int8 input scales back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.converters import (
    ArraySource,
    CalibrationSpec,
    ConversionConfig,
    ImageFolderSource,
    InputSpec,
    Normalization,
    StreamSource,
    calibration_source,
    convert_keras,
    convert_to_file,
    inspect_tflite,
    load_calibration_record,
    model_input_specs,
    select_calibration,
)
from edgekit.core._keras import keras, tf
from edgekit.core.errors import InputError
from edgekit.data import split

IMAGE = [InputSpec("image", (8, 8, 1))]


def two_input_model() -> keras.Model:
    """Inputs declared in non-alphabetical order: 'zeta' (4,) then 'alpha' (3,)."""
    zeta = keras.layers.Input((4,), name="zeta")
    alpha = keras.layers.Input((3,), name="alpha")
    x = keras.layers.Concatenate()([keras.layers.Dense(5)(zeta), keras.layers.Dense(5)(alpha)])
    return keras.Model([zeta, alpha], keras.layers.Dense(2)(x))


@pytest.fixture(scope="module")
def two_inputs() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    zeta = rng.uniform(0.0, 1.0, (60, 4)).astype(np.float32)
    alpha = rng.uniform(-10.0, 10.0, (60, 3)).astype(np.float32)
    return two_input_model(), zeta, alpha


def input_scales(blob: bytes) -> dict[str, float]:
    return {t["name"]: t["scale"] for t in inspect_tflite(blob).inputs}


# --- arrays -----------------------------------------------------------------------------------

def test_array_source_draws_like_select_calibration() -> None:
    x = np.random.default_rng(1).normal(size=(300, 8, 8, 1)).astype(np.float32)
    taken = ArraySource(x).take(IMAGE, 40, seed=3)
    samples, indices = select_calibration(x, 40, seed=3)
    np.testing.assert_array_equal(taken.indices, indices)
    np.testing.assert_array_equal(taken.arrays[0], samples)
    assert (taken.selection, taken.seed, len(taken)) == ("seeded", 3, 40)


def test_uint8_arrays_are_scaled_unless_normalize_is_given() -> None:
    x = np.full((5, 8, 8, 1), 255, np.uint8)
    assert ArraySource(x).take(IMAGE, 5, 0).arrays[0].max() == pytest.approx(1.0)
    norm = ArraySource(x, normalize={"mean": 127.5, "std": 127.5}).take(IMAGE, 5, 0)
    assert norm.arrays[0].max() == pytest.approx(1.0) and norm.arrays[0].dtype == np.float32
    zero = ArraySource(np.zeros((5, 8, 8, 1), np.uint8), normalize={"mean": 127.5, "std": 127.5})
    assert zero.take(IMAGE, 5, 0).arrays[0].min() == pytest.approx(-1.0)


def test_npz_by_input_name_or_x_and_npy(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((20, 8, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "named.npz", image=x, other=np.zeros(3))
    np.savez(tmp_path / "x.npz", x=x, y=np.arange(20))
    np.save(tmp_path / "x.npy", x)
    for name in ("named.npz", "x.npz", "x.npy"):
        taken = calibration_source(tmp_path / name).take(IMAGE, 20, 0)
        np.testing.assert_array_equal(taken.arrays[0], x)
        assert taken.source == str(tmp_path / name)


def test_npz_without_the_input_lists_what_it_has(tmp_path: Path) -> None:
    np.savez(tmp_path / "c.npz", pixels=np.zeros((4, 8, 8, 1)))
    with pytest.raises(InputError) as e:
        calibration_source(tmp_path / "c.npz").take(IMAGE, 4, 0)
    assert str(e.value) == (
        f"calibration data {str(tmp_path / 'c.npz')!r} has no array for model input 'image'; "
        "found ['pixels'] (name arrays after the inputs ['image'], or x)"
    )


def test_shape_mismatch_names_the_input_and_both_shapes() -> None:
    with pytest.raises(InputError) as e:
        ArraySource(np.zeros((10, 28, 28)), name="mnist.npz").take(
            [InputSpec("x", (32, 32, 1))], 5, 0)
    assert str(e.value) == (
        "calibration data 'mnist.npz' has sample shape (28, 28) but the model input 'x' "
        "expects (32, 32, 1)"
    )


def test_dtype_mismatch_names_the_input() -> None:
    with pytest.raises(InputError, match=r"input 'x' has dtype <U1 but the model input 'x' "
                                         r"expects float32 numbers"):
        ArraySource(np.array([["a"], ["b"]])).take([InputSpec("x", (1,))], 2, 0)
    with pytest.raises(InputError, match=r"non-integer values\) but the model input 'ids' "
                                         r"expects int32"):
        ArraySource(np.array([[0.5], [1.0]])).take([InputSpec("ids", (1,), "int32")], 2, 0)
    ids = ArraySource(np.array([[1.0], [2.0]])).take([InputSpec("ids", (1,), "int32")], 2, 0)
    assert ids.arrays[0].dtype == np.int32


def test_nan_and_missing_files_and_suffixes(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="input 'image' contains NaN or infinite values"):
        ArraySource(np.full((2, 8, 8, 1), np.nan)).take(IMAGE, 2, 0)
    with pytest.raises(InputError, match="does not exist"):
        calibration_source(tmp_path / "none.npz")
    (tmp_path / "c.csv").write_text("1,2")
    with pytest.raises(InputError, match=r"is not understood; expected a \.npy or \.npz"):
        calibration_source(tmp_path / "c.csv")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"is not a readable \.npz"):
        calibration_source(tmp_path / "bad.npz")


# --- multi-input models -----------------------------------------------------------------------

def test_model_input_specs_keep_declaration_order(two_inputs) -> None:
    model, _, _ = two_inputs
    assert model_input_specs(model) == [InputSpec("zeta", (4,)), InputSpec("alpha", (3,))]


@pytest.mark.parametrize("form", ["mapping", "list", "npz"])
def test_each_input_is_calibrated_on_its_own_data(two_inputs, tmp_path, form) -> None:
    model, zeta, alpha = two_inputs
    if form == "mapping":
        representative = {"alpha": alpha, "zeta": zeta}
    elif form == "list":
        representative = [zeta, alpha]
    else:
        np.savez(tmp_path / "two.npz", alpha=alpha, zeta=zeta)
        specs = model_input_specs(model)
        representative = calibration_source(tmp_path / "two.npz").take(specs, 60, 0)
    scales = input_scales(convert_keras(model, ConversionConfig(), representative))
    # int8 scale = range / 255: zeta spans ~[0, 1], alpha ~[-10, 10].
    assert scales["serving_default_zeta:0"] == pytest.approx(1.0 / 255, rel=0.05)
    assert scales["serving_default_alpha:0"] == pytest.approx(20.0 / 255, rel=0.05)


def test_multi_input_errors_name_the_input(two_inputs) -> None:
    model, zeta, alpha = two_inputs
    with pytest.raises(InputError, match=r"the model has 2 inputs \(zeta, alpha\)"):
        convert_keras(model, ConversionConfig(), zeta)
    with pytest.raises(InputError) as e:
        convert_keras(model, ConversionConfig(), [zeta, zeta])
    assert str(e.value) == (
        "calibration data has sample shape (4,) but the model input 'alpha' expects (3,)"
    )
    with pytest.raises(InputError, match="different sample counts per input"):
        convert_keras(model, ConversionConfig(), [zeta, alpha[:10]])
    with pytest.raises(InputError, match="no array for model input 'alpha'"):
        convert_keras(model, ConversionConfig(), {"zeta": zeta})


# --- streams ----------------------------------------------------------------------------------

def test_generator_function_gives_its_first_samples_and_drops_labels() -> None:
    x = np.arange(30 * 64, dtype=np.float32).reshape(30, 8, 8, 1)

    def pairs():
        for i in range(30):
            yield x[i], i % 10

    taken = StreamSource(pairs).take(IMAGE, 12, seed=99)
    np.testing.assert_array_equal(taken.arrays[0], x[:12])
    assert taken.selection == "first" and taken.seed is None
    np.testing.assert_array_equal(taken.indices, np.arange(12))


def test_batched_tf_data_dataset_is_split_and_cut() -> None:
    x = np.random.default_rng(0).random((50, 8, 8, 1)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(50, np.int64))).batch(16)
    taken = calibration_source(ds).take(IMAGE, 20, 0)
    np.testing.assert_allclose(taken.arrays[0], x[:20])


def test_stream_of_mappings_for_two_inputs(two_inputs) -> None:
    model, zeta, alpha = two_inputs
    stream = ({"alpha": alpha[i], "zeta": zeta[i]} for i in range(60))
    taken = StreamSource(stream).take(model_input_specs(model), 60, 0)
    scales = input_scales(convert_keras(model, ConversionConfig(), taken))
    assert scales["serving_default_alpha:0"] == pytest.approx(20.0 / 255, rel=0.05)


def test_short_or_empty_streams() -> None:
    short = StreamSource(iter([np.zeros((8, 8, 1))] * 3)).take(IMAGE, 10, 0)
    assert len(short) == 3
    with pytest.raises(InputError, match="gave no samples"):
        StreamSource(iter([])).take(IMAGE, 10, 0)
    with pytest.raises(InputError, match="has sample shape \\(4, 4, 1\\) but the model input "
                                         "'image' expects \\(8, 8, 1\\)"):
        StreamSource([np.zeros((4, 4, 1))]).take(IMAGE, 1, 0)


# --- image folders ----------------------------------------------------------------------------

def write_png(path: Path, value: int, size: tuple[int, int] = (12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((*size, 3), value, np.uint8)
    path.write_bytes(tf.io.encode_png(img).numpy())


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for i in range(6):
        write_png(root / ("cats" if i % 2 else "dogs") / f"{i}.png", 40 * i)
    (root / ".hidden").mkdir()
    write_png(root / ".hidden" / "skip.png", 255)
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_is_resized_to_the_model_and_scaled(folder: Path) -> None:
    source = calibration_source(folder)
    assert isinstance(source, ImageFolderSource) and len(source.files) == 6
    taken = source.take(IMAGE, 6, seed=0)
    assert taken.arrays[0].shape == (6, 8, 8, 1)  # 12x10 RGB -> 8x8 grey
    values = sorted(float(v) for v in taken.arrays[0].reshape(6, -1).mean(axis=1))
    assert values == pytest.approx([40 * i / 255 for i in range(6)], abs=1e-3)
    assert sorted(taken.files) == ["cats/1.png", "cats/3.png", "cats/5.png",
                                   "dogs/0.png", "dogs/2.png", "dogs/4.png"]


def test_folder_draw_is_seeded_and_recorded(folder: Path) -> None:
    a = calibration_source(folder).take(IMAGE, 3, seed=5)
    b = calibration_source(folder).take(IMAGE, 3, seed=5)
    assert a.files == b.files and len(a.files) == 3
    np.testing.assert_array_equal(a.indices, select_calibration(np.zeros(6), 3, seed=5)[1])


def test_folder_normalize_and_explicit_resize(folder: Path) -> None:
    spec = CalibrationSpec.from_value({"source": str(folder), "resize": [8, 8],
                                       "normalize": {"scale": 1.0, "offset": -100.0}})
    taken = spec.open().take(IMAGE, 6, 0)
    assert taken.arrays[0].min() == pytest.approx(-100.0)
    with pytest.raises(InputError, match=r"sample shape \(4, 4, 1\) but the model input 'image'"):
        ImageFolderSource(folder, resize=(4, 4)).take(IMAGE, 2, 0)


def test_folder_errors(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"images of different sizes|sample shape \(12, 10, 1\)"):
        ImageFolderSource(folder, resize=False).take(IMAGE, 6, 0)
    with pytest.raises(InputError, match="needs a model with one \\(height, width, channels\\)"):
        ImageFolderSource(folder).take([InputSpec("v", (4,))], 2, 0)
    (folder / "dogs" / "broken.png").write_bytes(b"\x89PNG nope")
    with pytest.raises(InputError, match="could not be decoded"):
        ImageFolderSource(folder).take(IMAGE, 7, 0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="has no images"):
        ImageFolderSource(empty)


# --- specs ------------------------------------------------------------------------------------

def test_spec_parsing_and_round_trip() -> None:
    assert CalibrationSpec.from_value("c.npz") == CalibrationSpec("c.npz")
    spec = CalibrationSpec.from_value({"source": "imgs", "resize": [32, 32],
                                       "normalize": {"mean": [1, 2, 3], "std": 2}})
    assert CalibrationSpec.from_value(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(InputError, match="known keys: source, resize, normalize"):
        CalibrationSpec.from_value({"source": "x", "size": 3})
    with pytest.raises(InputError, match="resize must be true, false or \\[height, width\\]"):
        CalibrationSpec.from_value({"source": "x", "resize": [0, 3]})
    with pytest.raises(InputError, match="normalize takes either"):
        CalibrationSpec.from_value({"source": "x", "normalize": {"scale": 1, "std": 2}})
    with pytest.raises(InputError, match=r"normalize\.std must not be 0"):
        Normalization.from_dict({"mean": 0, "std": 0})
    norm = Normalization.from_dict({"mean": [0, 10], "std": [1, 2]})
    assert norm.to_dict() == {"scale": [1.0, 0.5], "offset": [-0.0, -5.0]}


# --- the record beside the model --------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_dataset():
    x = np.random.default_rng(0).random((60, 8, 8, 1)).astype(np.float32)
    return split(x, np.arange(60) % 3, name="random")


def test_convert_to_file_records_a_file_source(float_model, tiny_dataset, tmp_path) -> None:
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(1).random((40, 8, 8, 1)))
    out = tmp_path / "m.tflite"
    info = convert_to_file(float_model, tiny_dataset, ConversionConfig(), out, samples=16, seed=2,
                           calibration=str(tmp_path / "calib.npz"))
    record = load_calibration_record(tmp_path / info["record"])
    assert record["source"] == str(tmp_path / "calib.npz") and record["seed"] == 2
    assert record["indices"] == select_calibration(np.zeros(40), 16, seed=2)[1].tolist()
    assert "selection" not in record and "files" not in record
    assert inspect_tflite(out).full_integer
    assert load_calibration_record(tmp_path / info["record"], model=out)["model_sha256"]


def test_convert_to_file_writes_nothing_when_the_record_cannot_be_written(
        float_model, tiny_dataset, tmp_path) -> None:
    out = tmp_path / "m.tflite"
    (tmp_path / "m.calibration.json").mkdir()  # the record's place is taken: its write fails
    with pytest.raises(InputError, match=r"m\.calibration\.json.* is a folder; expected a file"):
        convert_to_file(float_model, tiny_dataset, ConversionConfig(), out, samples=16, seed=0)
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_convert_to_file_records_folder_files_and_stream_selection(float_model, tiny_dataset,
                                                                   folder, tmp_path) -> None:
    out = tmp_path / "f.tflite"
    convert_to_file(float_model, tiny_dataset, ConversionConfig(), out, samples=4, seed=0,
                    calibration={"source": str(folder)})
    record = load_calibration_record(tmp_path / "f.calibration.json")
    assert len(record["files"]) == 4 and all(f.endswith(".png") for f in record["files"])
    out = tmp_path / "s.tflite"
    stream = (np.ones((8, 8, 1), np.float32) * i for i in range(100))
    info = convert_to_file(float_model, tiny_dataset, ConversionConfig(), out, samples=7, seed=0,
                           calibration=stream)
    record = load_calibration_record(tmp_path / info["record"])
    assert record["selection"] == "first" and record["indices"] == list(range(7))
    assert info["selection"] == "first"
