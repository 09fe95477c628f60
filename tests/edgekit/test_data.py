import numpy as np
import pytest

from edgekit.core.errors import InputError
from edgekit.data import check_fits, load_data, load_digits, load_image_folder, load_npz


def test_digits_default_is_32x32_scaled_and_split_stratified():
    ds = load_digits()
    assert ds.x_train.shape[1:] == (32, 32, 1) and ds.x_train.dtype == np.float32
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert len(ds.x_test) == 360
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    # Stratified: every class holds out 20 % +- 1 sample.
    counts = np.bincount(ds.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    # Disjoint, complete, and re-checkable from the recorded indices.
    assert set(ds.train_indices).isdisjoint(ds.heldout_indices)
    assert len(set(ds.train_indices) | set(ds.heldout_indices)) == 1797
    from sklearn.datasets import load_digits as sk

    assert np.array_equal(sk().target[ds.heldout_indices], ds.y_test)


def test_digits_split_is_seeded():
    a, b, c = load_digits(8), load_digits(8), load_digits(8, seed=1)
    assert np.array_equal(a.heldout_indices, b.heldout_indices)
    assert not np.array_equal(a.heldout_indices, c.heldout_indices)


def test_describe_records_heldout_indices():
    ds = load_digits(8)
    d = ds.describe()
    assert d["heldout_indices"] == [int(i) for i in ds.heldout_indices]
    assert d["sample_shape"] == [8, 8, 1] and d["num_classes"] == 10


def test_npz_roundtrip_and_uint8_scaling(tmp_path, rng):
    x = rng.integers(0, 256, size=(60, 4, 4, 1), dtype=np.uint8)
    y = np.repeat(np.arange(3), 20)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_npz(tmp_path / "d.npz")
    assert ds.num_classes == 3 and ds.x_train.max() <= 1.0
    assert len(ds.x_test) == 12
    i = ds.heldout_indices[0]
    assert np.allclose(ds.x_test[0], x[i] / 255.0)


@pytest.mark.parametrize(
    "arrays, fragment",
    [
        ({"x": np.zeros((10, 2))}, "must hold arrays 'x' and 'y'"),
        ({"x": np.zeros((10, 2)), "y": np.zeros(9, int)}, "x has 10 samples but y has 9"),
        ({"x": np.zeros((10, 2)), "y": np.zeros(10)}, "y must be non-negative integer labels"),
    ],
)
def test_npz_errors_name_the_problem(tmp_path, arrays, fragment):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match=fragment):
        load_npz(tmp_path / "bad.npz")


def test_corrupt_and_missing_npz(tmp_path):
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"not a readable \.npz"):
        load_npz(tmp_path / "c.npz")
    with pytest.raises(InputError, match=r"does not exist"):
        load_npz(tmp_path / "missing.npz")


def test_image_folder(tmp_path, rng):
    from edgekit.core._keras import tf

    for cls, value in (("cat", 40), ("dog", 200)):
        (tmp_path / cls).mkdir()
        for k in range(5):
            img = np.full((10, 12, 3), value, np.uint8)
            img[0, 0] = k
            (tmp_path / cls / f"{k}.png").write_bytes(tf.io.encode_png(img).numpy())
    ds = load_image_folder(tmp_path, image_size=(6, 6), channels=3)
    assert ds.class_names == ("cat", "dog") and ds.sample_shape == (6, 6, 3)
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    # Labels follow folder order; pixel values are scaled to [0, 1].
    assert np.allclose(x[y == 0][:, 3, 3], 40 / 255.0, atol=1e-3)
    assert np.allclose(x[y == 1][:, 3, 3], 200 / 255.0, atol=1e-3)
    via_spec = load_data(str(tmp_path), input_shape=(6, 6, 3))
    assert via_spec.sample_shape == (6, 6, 3)


def test_shape_mismatch_is_a_clear_error():
    ds = load_digits(8)
    with pytest.raises(InputError, match=r"sample shape \(8, 8, 1\) but the model expects"):
        check_fits(ds, (32, 32, 3))
    check_fits(ds, (None, None, 1))  # unknown dims match


def test_unknown_data_spec():
    with pytest.raises(InputError, match=r"expected 'digits', 'kws', an \.npz"):
        load_data("imagenet")
