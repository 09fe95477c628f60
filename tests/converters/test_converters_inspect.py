"""Flatbuffer inspection: op counts, dtypes, I/O quantization, size, weight sparsity."""

from __future__ import annotations

import json

import pytest

from edgekit.converters import (
    ConversionConfig,
    InspectionResult,
    convert_keras,
    format_inspection,
    inspect_tflite,
    weight_sparsity,
)
from edgekit.core.errors import InputError


@pytest.fixture(scope="module")
def sparse_blob(float_model, calibration, helpers) -> bytes:
    return convert_keras(helpers["half_zeroed"](float_model), ConversionConfig(), calibration)


def test_counts_ops_of_known_model(int8_path) -> None:
    result = inspect_tflite(int8_path)
    counts = {o["op"]: o["count"] for o in result.ops}
    assert counts == {"CONV_2D": 1, "FULLY_CONNECTED": 1, "RESHAPE": 1}
    assert result.path == str(int8_path)
    assert result.bytes == int8_path.stat().st_size
    assert 0 < result.gzip_bytes < result.bytes


def test_ops_sorted_by_count_then_name(convert) -> None:
    ops = inspect_tflite(convert("float16")).ops
    assert ops[0] == {"op": "DEQUANTIZE", "count": 4}
    rest = [o["op"] for o in ops[1:]]
    assert rest == sorted(rest)


def test_io_entries(int8_path) -> None:
    result = inspect_tflite(int8_path)
    (inp,), (out,) = result.inputs, result.outputs
    assert inp["shape"] == [1, 8, 8, 1] and out["shape"] == [1, 3]
    assert inp["dtype"] == out["dtype"] == "int8"
    assert inp["scale"] > 0 and isinstance(inp["zero_point"], int)
    assert -128 <= inp["zero_point"] <= 127


def test_float_io_has_no_quant_params(convert) -> None:
    result = inspect_tflite(convert("float32"))
    assert result.inputs[0]["scale"] is None and result.inputs[0]["zero_point"] is None
    assert result.float_io == [result.inputs[0]["name"], result.outputs[0]["name"]]
    conv = next(o for o in result.float_ops if o["op"] == "CONV_2D")
    assert result.inputs[0]["name"] in conv["tensors"]
    assert set(conv) == {"op", "subgraph", "index", "tensors"}


def test_tensor_dtype_histogram(convert) -> None:
    int8 = inspect_tflite(convert("int8")).tensors
    assert set(int8) == {"int8", "int32"}  # int32: biases and the reshape shape
    assert inspect_tflite(convert("float32")).tensors["float32"] >= 6


def test_bytes_and_path_give_same_result(int8_path) -> None:
    a = inspect_tflite(int8_path).to_dict()
    b = inspect_tflite(int8_path.read_bytes()).to_dict()
    assert b.pop("path") == "<bytes>"
    a.pop("path")
    assert a == b


def test_to_dict_is_json_and_save_refuses_overwrite(int8_path, tmp_path) -> None:
    result = inspect_tflite(int8_path)
    assert isinstance(result, InspectionResult)
    dest = result.save(tmp_path / "inspect.json")
    assert json.loads(dest.read_text()) == json.loads(json.dumps(result.to_dict()))
    with pytest.raises(InputError, match="exists; pass overwrite=True"):
        result.save(dest)
    result.save(dest, overwrite=True)


def test_dense_weights_have_no_sparsity(int8_path) -> None:
    rows = weight_sparsity(int8_path)
    assert [r["op"] for r in rows] == ["CONV_2D", "FULLY_CONNECTED"]
    conv, dense = rows
    assert conv["shape"] == [8, 3, 3, 1] and conv["params"] == 72 and conv["dtype"] == "int8"
    assert dense["shape"] == [3, 512] and dense["params"] == 1536
    assert all(r["sparsity"] < 0.05 for r in rows)


def test_half_zeroed_kernels_report_half_sparsity(sparse_blob) -> None:
    for row in weight_sparsity(sparse_blob):
        assert row["sparsity"] == pytest.approx(0.5, abs=0.02), row
        assert row["zeros"] == round(row["sparsity"] * row["params"])


def test_sparse_model_compresses_better(sparse_blob, int8_path) -> None:
    sparse = inspect_tflite(sparse_blob)
    dense = inspect_tflite(int8_path)
    assert sparse.gzip_bytes < sparse.bytes
    assert sparse.gzip_bytes < dense.gzip_bytes
    assert sparse.full_integer


def test_float_weights_sparsity(convert) -> None:
    rows = weight_sparsity(convert("float32"))
    assert {r["dtype"] for r in rows} == {"float32"} and {r["scales"] for r in rows} == {0}


def test_format_inspection_shows_the_facts(sparse_blob) -> None:
    result = inspect_tflite(sparse_blob)
    text = format_inspection(result, weight_sparsity(sparse_blob))
    for needle in ("full integer", "CONV_2D", "FULLY_CONNECTED", "int8[1, 8, 8, 1]",
                   "gzip -9", "weight sparsity", "50.0%", "scale="):
        assert needle in text, needle
    assert "float ops" not in text


def test_format_inspection_lists_float_ops(convert) -> None:
    text = format_inspection(inspect_tflite(convert("float32")))
    assert "NOT full integer" in text and "float ops (3)" in text and "float I/O" in text


def test_missing_file(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        inspect_tflite(tmp_path / "nope.tflite")
    with pytest.raises(InputError, match="does not exist"):
        weight_sparsity(tmp_path / "nope.tflite")


def test_not_a_tflite_file(tmp_path) -> None:
    bogus = tmp_path / "x.tflite"
    bogus.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 4)
    with pytest.raises(InputError) as e:
        inspect_tflite(bogus)
    assert str(e.value) == (
        f"model {str(bogus)!r} is not a TFLite flatbuffer (expected file identifier TFL3)"
    )


def test_truncated_flatbuffer(int8_path) -> None:
    with pytest.raises(InputError, match="damaged TFLite flatbuffer"):
        inspect_tflite(int8_path.read_bytes()[:64])
