"""device_bench.interpreter on real tiny models: loading, (de)quantization, run_batch."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device_bench.errors import BenchInputError
from device_bench.interpreter import (
    INTERPRETER_NAMES,
    LoadedInterpreter,
    dequantize_output,
    load_interpreter,
    quantize_input,
    run_batch,
)


def _detail(dtype: Any, scale: float, zero: int, shape: tuple[int, ...] = (1, 4)) -> dict:
    """An input/output detail dict shaped like the interpreter's."""
    return {
        "name": "t",
        "index": 0,
        "shape": np.array(shape),
        "dtype": dtype,
        "quantization": (scale, zero),
        "quantization_parameters": {
            "scales": np.array([scale], dtype=np.float32) if scale else np.array([], np.float32),
            "zero_points": np.array([zero], dtype=np.int32) if scale else np.array([], np.int32),
            "quantized_dimension": 0,
        },
    }


# ---- quantize_input / dequantize_output on hand-computed values -----------------------------


def test_quantize_int8_known_values() -> None:
    d = _detail(np.int8, 0.25, -3)
    x = np.array([0.0, 0.125, -0.125, 0.3, 0.4, 100.0, -100.0], dtype=np.float32)
    # x / 0.25 = 0, 0.5, -0.5, 1.2, 1.6, 400, -400 -> round half away from zero -> + zp -> clip
    q = quantize_input(x, d)
    assert q.dtype == np.int8
    assert q.tolist() == [-3, -2, -4, -2, -1, 127, -128]


def test_quantize_uint8_and_int16_known_values() -> None:
    q8 = quantize_input(np.array([0.0, 0.25, 1.0, -1.0, 9.0]), _detail(np.uint8, 1 / 32, 128))
    assert q8.dtype == np.uint8
    assert q8.tolist() == [128, 136, 160, 96, 255]
    q16 = quantize_input(np.array([0.0, 1.5, -1.0, 1.0, -1.1]), _detail(np.int16, 2**-15, 0))
    assert q16.dtype == np.int16
    assert q16.tolist() == [0, 32767, -32768, 32767, -32768]
    # 127.5 and -2.5 steps: ties round away from zero, like TFLite's kernels (numpy rounds to even).
    ties = quantize_input(np.array([127.5, -2.5, 2.5]), _detail(np.int16, 1.0, 0))
    assert ties.tolist() == [128, -3, 3]


def test_dequantize_known_values() -> None:
    y = dequantize_output(np.array([-3, 0, 127, -128], dtype=np.int8), _detail(np.int8, 0.1, -3))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [0.0, 0.3, 13.0, -12.5], rtol=0, atol=1e-6)
    y8 = dequantize_output(np.array([0, 255], dtype=np.uint8), _detail(np.uint8, 0.5, 128))
    np.testing.assert_allclose(y8, [-64.0, 63.5])


@pytest.mark.parametrize(
    ("dtype", "scale", "zero"),
    [(np.int8, 0.0078125, -5), (np.uint8, 0.02, 131), (np.int16, 3.0e-5, 0)],
)
def test_round_trip_within_half_a_step(dtype: Any, scale: float, zero: int) -> None:
    d = _detail(dtype, scale, zero)
    info = np.iinfo(dtype)
    lo, hi = (info.min - zero) * scale, (info.max - zero) * scale  # the representable range
    x = np.random.default_rng(0).uniform(lo, hi, size=(1000,)).astype(np.float32)
    back = dequantize_output(quantize_input(x, d), d)
    assert np.max(np.abs(back - x)) <= scale / 2 + 1e-6 * max(abs(lo), abs(hi))


def test_float_and_unquantized_tensors_pass_through() -> None:
    x = np.array([[0.1, -2.0, 3.5, 7.0]], dtype=np.float64)
    q = quantize_input(x, _detail(np.float32, 0.0, 0))
    assert q.dtype == np.float32
    np.testing.assert_array_equal(q, x.astype(np.float32))
    assert dequantize_output(q, _detail(np.float32, 0.0, 0)) is q
    ids = quantize_input(np.array([1.0, 2.0]), _detail(np.int32, 0.0, 0))
    assert ids.dtype == np.int32 and ids.tolist() == [1, 2]
    raw = np.array([3, 4], dtype=np.int32)
    assert dequantize_output(raw, _detail(np.int32, 0.0, 0)) is raw


def test_per_axis_quantization_broadcasts_on_its_dimension() -> None:
    d = _detail(np.int8, 0.1, 0, shape=(1, 2))
    d["quantization_parameters"] = {
        "scales": np.array([0.1, 0.5], dtype=np.float32),
        "zero_points": np.array([0, 2], dtype=np.int32),
        "quantized_dimension": 1,
    }
    q = quantize_input(np.array([[1.0, 1.0]]), d)
    assert q.tolist() == [[10, 4]]
    np.testing.assert_allclose(dequantize_output(q, d), [[1.0, 1.0]], atol=1e-6)


def test_quantize_rejects_nan() -> None:
    with pytest.raises(BenchInputError, match="NaN or infinity"):
        quantize_input(np.array([np.nan]), _detail(np.int8, 0.1, 0))


# ---- load_interpreter ---------------------------------------------------------------------------


def test_load_reports_backend_and_settings(tiny) -> None:
    loaded = load_interpreter(tiny.int8, threads=2, xnnpack=False)
    assert isinstance(loaded, LoadedInterpreter)
    assert loaded.name == "ai_edge_litert"
    assert loaded.version == importlib.metadata.version("ai-edge-litert")
    assert loaded.threads == 2
    assert loaded.delegate == "none"
    assert loaded.init_ms > 0
    default = load_interpreter(tiny.int8)
    assert (default.threads, default.delegate) == (None, "xnnpack")
    with pytest.raises(AttributeError):
        default.name = "x"  # frozen


def test_load_from_bytes_matches_load_from_path(tiny) -> None:
    from_bytes = run_batch(load_interpreter(tiny.int8.read_bytes()), tiny.x[:8])
    from_path = run_batch(load_interpreter(str(tiny.int8)), tiny.x[:8])
    np.testing.assert_array_equal(from_bytes, from_path)


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.tflite"
    with pytest.raises(BenchInputError, match=r"^model '.*x\.tflite' does not exist"):
        load_interpreter(path)
    with pytest.raises(BenchInputError, match="is not a file"):
        load_interpreter(tmp_path)
    path.write_bytes(b"")
    with pytest.raises(BenchInputError, match="is empty"):
        load_interpreter(path)


def test_load_corrupt_file(corrupt_model: Path) -> None:
    with pytest.raises(BenchInputError) as err:
        load_interpreter(corrupt_model)
    msg = str(err.value)
    assert msg.startswith(f"model {str(corrupt_model)!r} is not a valid TFLite flatbuffer: ")
    assert "\n" not in msg
    with pytest.raises(BenchInputError, match=r"model '<bytes>' is not a valid TFLite flatbuffer"):
        load_interpreter(b"not a flatbuffer at all")


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_load_rejects_bad_threads(tiny, threads: Any) -> None:
    with pytest.raises(BenchInputError, match="threads must be None or an integer >= 1"):
        load_interpreter(tiny.float32, threads=threads)


def test_falls_back_to_tensorflow_lite(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    # With neither ai_edge_litert nor tflite_runtime importable, tf.lite's interpreter is used.
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter",
                 "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)
    loaded = load_interpreter(tiny.int8)
    assert loaded.name == "tensorflow.lite" == INTERPRETER_NAMES[2]
    assert loaded.version == importlib.metadata.version("tensorflow")
    no_xnn = load_interpreter(tiny.int8, xnnpack=False)
    assert no_xnn.delegate == "none"
    monkeypatch.undo()
    reference = run_batch(load_interpreter(tiny.int8), tiny.x)
    np.testing.assert_array_equal(run_batch(loaded, tiny.x), reference)
    # XNNPACK and the built-in kernels may round an intermediate differently: one output step.
    step = _out_scale(loaded)
    np.testing.assert_allclose(run_batch(no_xnn, tiny.x), reference, rtol=0, atol=step * 1.001)


# ---- run_batch ---------------------------------------------------------------------------------


def _out_scale(loaded: LoadedInterpreter) -> float:
    return float(loaded.interpreter.get_output_details()[0]["quantization"][0])


def test_run_batch_float_matches_keras(tiny) -> None:
    y = run_batch(load_interpreter(tiny.float32), tiny.x)
    ref = tiny.keras_model(tiny.x).numpy()
    assert y.shape == (64, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["int8", "uint8", "int16"])
def test_run_batch_quantized_close_to_float(tiny, kind: str) -> None:
    loaded = load_interpreter(getattr(tiny, kind))
    in_dtype = loaded.interpreter.get_input_details()[0]["dtype"]
    assert np.dtype(in_dtype) == np.dtype(kind)
    y = run_batch(loaded, tiny.x)
    ref = run_batch(load_interpreter(tiny.float32), tiny.x)
    assert y.shape == ref.shape == (64, 4) and y.dtype == np.float32
    # The output range is about 1; int8 steps are ~1/256 of it, int16x8 keeps int8 weights.
    err = float(np.max(np.abs(y - ref)))
    assert err < 0.05 * float(np.max(np.abs(ref)))
    if kind != "int16":
        assert err <= 4 * _out_scale(loaded)  # a few quantization steps


def test_run_batch_uint8_equals_int8(tiny) -> None:
    a = run_batch(load_interpreter(tiny.int8), tiny.x)
    b = run_batch(load_interpreter(tiny.uint8), tiny.x)
    np.testing.assert_allclose(a, b, atol=_out_scale(load_interpreter(tiny.int8)) + 1e-6)


def test_run_batch_empty_batch(tiny) -> None:
    y = run_batch(load_interpreter(tiny.int8), np.zeros((0, 8), np.float32))
    assert y.shape == (0, 4) and y.dtype == np.float32


def test_run_batch_rejects_wrong_shapes(tiny) -> None:
    loaded = load_interpreter(tiny.int8)
    with pytest.raises(BenchInputError, match=r"input batch of shape \[5, 7\] does not match"):
        run_batch(loaded, np.zeros((5, 7), np.float32))
    with pytest.raises(BenchInputError, match="does not match"):
        run_batch(loaded, np.zeros((8,), np.float32))
    with pytest.raises(BenchInputError, match="exactly 1 input and 1 output, got 2 inputs"):
        run_batch(load_interpreter(tiny.two_inputs), np.zeros((1, 3), np.float32))
