"""device_bench.tflite_check: the model check before the interpreter, and the probe run behind it.

The fuzz-found crashes themselves are in tests/fuzz/test_fuzz_regressions.py; here: the rules'
op codes against the schema, the structure checks, what a real model passes, the containment.
"""

from __future__ import annotations

import os
import signal
import struct
import time
from pathlib import Path

import pytest

from device_bench import tflite_check
from device_bench.errors import BenchInputError
from device_bench.tflite_check import MalformedModel, check_tflite, describe_exit, probe_in_child

SEEDS = Path(__file__).resolve().parents[1] / "data" / "fuzz" / "seeds"


def test_the_rules_name_the_schema_s_op_codes() -> None:
    """The codes are written out (a board has no schema bindings); they must match LiteRT's."""
    from ai_edge_litert import schema_py_generated as schema

    op, options = schema.BuiltinOperator, schema.BuiltinOptions
    assert tflite_check._CONTROL_FLOW == {op.IF: (options.IfOptions, (0, 1)),
                                          op.WHILE: (options.WhileOptions, (0, 1)),
                                          op.CALL_ONCE: (options.CallOnceOptions, (0,))}
    names = {getattr(op, n): n for n in (
        "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_3D", "TRANSPOSE_CONV",
        "CONV_3D_TRANSPOSE", "SVDF", "RESHAPE", "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "BIDIRECTIONAL_SEQUENCE_LSTM", "RNN", "UNIDIRECTIONAL_SEQUENCE_RNN",
        "BIDIRECTIONAL_SEQUENCE_RNN")}
    assert set(tflite_check._OPTIONAL_INPUTS) == set(names)
    assert tflite_check._UNCHECKED_OPS == {op.CUSTOM, op.DELEGATE}
    assert set(tflite_check._MIN_INPUTS) == {op.DEPTHWISE_CONV_2D}
    assert tflite_check._FIRST_STABLEHLO == min(v for k, v in vars(op).items()
                                                if k.startswith("STABLEHLO_"))
    sparse = schema.SparseIndexVector
    assert tflite_check._SPARSE_VECTOR_WIDTHS == {sparse.Int32Vector: 4, sparse.Uint16Vector: 2,
                                                  sparse.Uint8Vector: 1}


def test_real_models_pass_quickly() -> None:
    for path in sorted(SEEDS.glob("*.tflite")):
        start = time.perf_counter()
        outline = check_tflite(path.read_bytes(), str(path))
        assert time.perf_counter() - start < 0.25
        assert outline.subgraphs == 1 and outline.operators[0] >= 2 and outline.buffers > 1


@pytest.mark.parametrize("edit, reason", [
    (lambda d: d[:4] + b"XXXX" + d[8:], "expected file identifier TFL3"),
    (lambda d: d[:40], "damaged vtable"),
    (lambda d: struct.pack("<I", 0x7FFFFFF0) + d[4:], "lies outside the file"),
    (lambda d: b"", "expected file identifier TFL3"),
])
def test_damaged_structure_is_one_line(edit, reason: str) -> None:
    data = edit((SEEDS / "cnn_int8.tflite").read_bytes())
    with pytest.raises(MalformedModel) as err:
        check_tflite(data, "m.tflite")
    assert isinstance(err.value, BenchInputError) and reason in err.value.reason
    assert str(err.value).startswith("model 'm.tflite' is not a valid TFLite flatbuffer: ")
    assert "\n" not in str(err.value)


def _repacked(seed: str, edit) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf((SEEDS / seed).read_bytes(), 0)
    edit(model)
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_a_variable_tensor_with_data_may_be_written() -> None:
    """An op writing a tensor with data is refused, unless the tensor is a variable (state)."""
    def writes_weights(model) -> None:
        model.subgraphs[0].tensors[3].buffer = 2

    def variable(model) -> None:
        writes_weights(model)
        model.subgraphs[0].tensors[3].isVariable = True

    with pytest.raises(MalformedModel, match="writes tensor 3, a constant"):
        check_tflite(_repacked("mlp_int8.tflite", writes_weights))
    check_tflite(_repacked("mlp_int8.tflite", variable))


def test_inspection_mode_reads_what_only_running_would_break() -> None:
    data = _repacked("mlp_int8.tflite", lambda m: setattr(m.subgraphs[0], "outputs", [-1]))
    with pytest.raises(MalformedModel, match="names tensor -1 as an output"):
        check_tflite(data)
    check_tflite(data, runnable=False)


def test_probe_refuses_what_crashes_and_leaves_errors_to_the_real_run() -> None:
    def crash() -> None:
        os.kill(os.getpid(), signal.SIGSEGV)

    with pytest.raises(MalformedModel) as err:
        probe_in_child(crash, "m.tflite")
    assert "it crashes the interpreter at its first run (signal SIGSEGV" in str(err.value)
    probe_in_child(lambda: 1 / 0, "m.tflite")  # an exception is the real run's to report
    probe_in_child(lambda: None, "m.tflite")


def test_describe_exit_names_the_signal() -> None:
    assert describe_exit(-11).startswith("signal SIGSEGV: the interpreter crashed")
    assert describe_exit(134).startswith("exit 134, SIGABRT: the interpreter crashed")
    assert describe_exit(143) == "exit 143, SIGTERM"
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(3) == "exit 3"
