"""Array files that declare more memory than one file may take are refused from their headers.

A zip member is compressed, so a small ``.npz`` can declare gigabytes (a zip bomb); every loader
of users' array files reads the ``.npy`` headers first (``device_bench.array_limits``).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from device_bench import array_limits
from device_bench.array_limits import check_array_sizes, declared_arrays
from device_bench.errors import BenchInputError
from device_bench.interpreter import load_interpreter
from device_bench.runner import BenchOptions, make_inputs

pytestmark = pytest.mark.reliability("data")


def _header_only_npz(path: Path, shape: tuple[int, ...]) -> Path:
    """An .npz whose member ``x`` declares ``shape`` float32 but holds no data (a few bytes)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", b"\x93NUMPY\x02\x00" + buf.getvalue()[8:])
        z.writestr("y.npy", _npy(np.zeros(4, np.int64)))
    return path


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_the_headers_give_names_shapes_and_dtypes(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "d.npz", x=np.zeros((3, 8, 8, 1), np.float32),
                        y=np.arange(3))
    np.save(tmp_path / "a.npy", np.ones((2, 5), np.uint8))
    assert sorted(declared_arrays(tmp_path / "d.npz")) == [
        ("x", (3, 8, 8, 1), np.dtype(np.float32)), ("y", (3,), np.dtype(np.int64))]
    assert list(declared_arrays(tmp_path / "a.npy")) == [("", (2, 5), np.dtype(np.uint8))]
    assert check_array_sizes(tmp_path / "d.npz") is None


def test_a_header_that_declares_terabytes_is_refused_before_loading(tmp_path: Path) -> None:
    from edgekit.core.errors import InputError
    from edgekit.data import load_npz

    bomb = _header_only_npz(tmp_path / "bomb.npz", (2**38, 4))
    assert bomb.stat().st_size < 1000
    why = check_array_sizes(bomb)
    assert why is not None and "4096.0 GiB" in why and "x: (274877906944, 4) float32" in why
    with pytest.raises(InputError, match=r"data .*bomb\.npz' is refused: its arrays declare"):
        load_npz(bomb)


def test_a_real_compressed_bomb_is_refused_by_every_loader(tiny, tmp_path: Path,
                                                           monkeypatch) -> None:
    """64 MiB of zeros compress to about 64 KiB; with a 16 MiB limit each loader says no."""
    from edgekit.converters.calibration_sources import load_array_file
    from edgekit.core.errors import InputError
    from edgekit.data import load_npz

    monkeypatch.setattr(array_limits, "MAX_ARRAY_BYTES", 16 * 2**20)
    bomb = tmp_path / "zeros.npz"
    np.savez_compressed(bomb, x=np.zeros((2**14, 32, 32, 1), np.float32),
                        y=np.zeros(2**14, np.int64))
    assert bomb.stat().st_size < 2**20
    with pytest.raises(InputError, match=r"is refused: its arrays declare 0\.1 GiB"):
        load_npz(bomb)
    with pytest.raises(InputError, match=r"calibration file .* is refused"):
        load_array_file(bomb)
    with pytest.raises(BenchInputError, match=r"input file .* is refused"):
        make_inputs(load_interpreter(tiny.int8).interpreter, BenchOptions(input_path=str(bomb)))
    small = tmp_path / "small.npz"
    np.savez_compressed(small, x=np.zeros((16, 8, 8, 1), np.float32), y=np.arange(16) % 2)
    assert len(load_npz(small).x_train) + len(load_npz(small).x_test) == 16
