"""Every crash that fuzzing found, as a regression test with its minimal input.

The ``.tflite`` inputs are files in ``tests/data/fuzz/`` (written by ``tests/fuzz/make_seeds.py``
as the smallest edit of a seed model); the others are inline bytes. Each test says what the
input did before the fix and asserts what it gives now: the documented one-line error, or, for a
reader that now copes, a result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device_bench.errors import BenchInputError
from device_bench.tflite_check import MalformedModel, check_tflite
from edgekit.core.errors import InputError

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "fuzz"

# name -> (what LiteRT 2.3 did with it, what check_tflite says now; None = it passes the check)
INTERPRETER_CRASHES = {
    "input_is_constant": ("SIGSEGV in set_tensor", "input tensor 2 is a constant"),
    "op_writes_constant": ("SIGSEGV in invoke", "operator 0 writes tensor 3, a constant"),
    "output_minus_one": ("abort, double free", "names tensor -1 as an output"),
    "fc_weights_left_out": ("SIGSEGV in invoke", "leaves out (-1) its input 1"),
    "depthwise_two_inputs": ("SIGSEGV in invoke", "has 2 inputs; its kernel reads 3"),
    "split_with_conv_options": ("SIGSEGV in invoke", None),  # the probe run refuses it
}
# name -> what inspect raised before; now: None (a result) or the InputError it gives.
INSPECT_CRASHES = {
    "fewer_zero_points": ("IndexError in _quant", "3 quantization scales but 0 zero points"),
    "bad_quantized_dimension": ("IndexError in weight_sparsity", "quantized along axis 4"),
    "conv_one_input": ("IndexError in the XNNPACK check", None),
    "depthwise_conv_options": ("AttributeError in the XNNPACK check", None),
    "dequantize_cycle": ("RecursionError in the XNNPACK check", None),
    "weight_type_mismatch": ("ValueError in weight_sparsity (np.frombuffer)", None),
}


def _device_bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "device_bench", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=REPO, check=False)


@pytest.mark.parametrize("name", sorted(INTERPRETER_CRASHES))
def test_interpreter_crash_is_refused_with_one_line(name: str) -> None:
    path = DATA / f"{name}.tflite"
    expected = INTERPRETER_CRASHES[name][1]
    if expected is None:
        check_tflite(path.read_bytes(), str(path))  # only the probe run can tell
    else:
        with pytest.raises(MalformedModel, match=expected.replace("(", r"\(").replace(")", r"\)")):
            check_tflite(path.read_bytes(), str(path))
    proc = _device_bench(str(path), "--runs", "5", "--min-seconds", "0")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("INFO")]
    assert proc.returncode == 2, proc.stderr
    assert lines == [lines[-1]] and lines[-1].startswith(
        f"device_bench: error: model {str(path)!r} is not a valid TFLite flatbuffer: ")
    if expected is None:
        assert "it crashes the interpreter at its first run (signal SIGSEGV" in lines[-1]


@pytest.mark.parametrize("name", sorted(INSPECT_CRASHES))
def test_inspect_crash_is_fixed(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from edgekit.cli import main

    path = DATA / f"{name}.tflite"
    expected = INSPECT_CRASHES[name][1]
    code = main(["inspect", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    if expected is None:
        assert code == 0 and err == []
    else:
        assert code == 2 and len(err) == 1 and expected in err[0]
        assert err[0].startswith(f"edgekit: error: model {str(path)!r} is a damaged TFLite ")


def test_inspect_still_reads_the_interpreter_crashes() -> None:
    """They are well-formed files with a fatal meaning: inspect (which runs nothing) reads them."""
    from edgekit.converters import inspect_tflite

    for name in INTERPRETER_CRASHES:
        assert inspect_tflite(DATA / f"{name}.tflite").ops


def test_shared_tables_are_refused_not_walked_forever() -> None:
    """A vector whose every entry points at the same big table would make a reader loop for ever;
    the check refuses a file that references more bytes than it holds."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf((DATA / "seeds" / "mlp_int8.tflite").read_bytes(), 0)
    builder = flatbuffers.Builder(1024)

    def vector(start: object, offsets: list[int]) -> int:
        start(builder, len(offsets))
        for offset in reversed(offsets):
            builder.PrependUOffsetTRelative(offset)
        return builder.EndVector()

    sub = model.subgraphs[0].Pack(builder)
    subs = vector(schema.ModelStartSubgraphsVector, [sub] * 2000)  # one subgraph, 2000 times
    codes = vector(schema.ModelStartOperatorCodesVector,
                   [c.Pack(builder) for c in model.operatorCodes])
    buffers = vector(schema.ModelStartBuffersVector, [b.Pack(builder) for b in model.buffers])
    schema.ModelStart(builder)
    schema.ModelAddVersion(builder, 3)
    schema.ModelAddOperatorCodes(builder, codes)
    schema.ModelAddSubgraphs(builder, subs)
    schema.ModelAddBuffers(builder, buffers)
    builder.Finish(schema.ModelEnd(builder), file_identifier=b"TFL3")
    with pytest.raises(MalformedModel, match="more bytes than it holds"):
        check_tflite(bytes(builder.Output()), "shared.tflite", runnable=False)


# ---------------------------------------------------------------- recipes (inline inputs)
RECIPE_CRASHES = {
    # input, suffix, what it raised before, what the one line says now
    "not_utf8": (b"model: demo_cnn\ndata: \xff\xfe\n", ".yaml", "UnicodeDecodeError",
                 "is not UTF-8 text"),
    "deep_nesting": (b"[" * 5000 + b"]" * 5000, ".yaml", "RecursionError in yaml",
                     "nests too deeply"),
    "list_for_a_number": (json.dumps({"stages": [{"class_name": "Prune", "config": {
        "final_sparsity": [0.5]}}]}).encode(), ".json", "TypeError in compress.prune",
        "stages[0]: a value has the wrong type"),
    "list_for_learning_rate": (b"train: {learning_rate: [3]}\n", ".yaml",
                               "TypeError in compress.training",
                        "train: a value has the wrong type"),
    "unhashable_class_name": (b'{"stages": [{"class_name": ["Prune"]}]}', ".json",
                              "TypeError in compress.registry", "stages[0]"),
    "alias_bomb": (("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcd", "bcde", strict=True))
        + "model: *e\n").encode(), ".yaml", "a hang printing 10**5 values",
        "expands to more than 100,000 values"),
    "huge_sweep": (b"sweep: {seed: &s [0,1,2,3,4,5,6,7,8,9], bench.runs: *s, bench.warmup: *s, "
                   b"convert.calibration_seed: *s}\n", ".yaml", "a hang building 10**4 recipes",
                   "the sweep makes 10,000 candidates"),
}


@pytest.mark.parametrize("name", sorted(RECIPE_CRASHES))
def test_recipe_crash_is_one_line(name: str, tmp_path: Path) -> None:
    from edgekit.recipe import Recipe

    data, suffix, _, expected = RECIPE_CRASHES[name]
    path = tmp_path / f"r{suffix}"
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        Recipe.load(path)
    assert expected in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- .npz / .npy (inline inputs)
def _npz(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _bad_crc() -> bytes:
    data = bytearray(_npz(x=np.zeros((4, 6, 6, 1), np.float32)))
    data[data.index(b"\x93NUMPY") + 80] ^= 0xFF  # a byte of the array: the CRC no longer holds
    return bytes(data)


ARRAY_CRASHES = {
    # name: (suffix, bytes, before, the message now)
    "empty_file": (".npz", b"", "EOFError", "is not a readable .npz"),
    "not_a_zip": (".npz", b"PK\x03\x04 not really", "BadZipFile", "is not a readable .npz"),
    "bad_crc": (".npz", _bad_crc(), "BadZipFile (Bad CRC-32)", "is not a readable .npz"),
    "truncated_npy_header": (".npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order",
                             "TokenError", "is not a readable .npy"),
    "complex_samples": (".npz", _npz(x=np.ones((3, 6, 6, 1), np.complex64)),
                        "ComplexWarning, then the imaginary part dropped", "has dtype complex64"),
    "timedelta_samples": (".npz", _npz(x=np.ones((3, 6, 6, 1), "timedelta64[s]")),
                          "TypeError in np.mod", "has dtype timedelta64"),
}


@pytest.mark.parametrize("name", sorted(ARRAY_CRASHES))
def test_calibration_file_crash_is_one_line(name: str, tmp_path: Path) -> None:
    from edgekit.converters import InputSpec, calibration_source

    suffix, data, _, expected = ARRAY_CRASHES[name]
    path = tmp_path / f"calib{suffix}"
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        calibration_source(str(path)).take([InputSpec("x", (6, 6, 1), "int8")], 2, 0)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_data_npz_with_a_scalar_x_is_one_line(tmp_path: Path) -> None:
    """Before: ``TypeError: len() of unsized object`` in load_npz."""
    from edgekit.data import load_npz

    path = tmp_path / "d.npz"
    path.write_bytes(_npz(x=np.float32(1.0), y=np.int64(0)))
    with pytest.raises(InputError, match=r"x must be numeric \(N, \.\.\.\), got float32 \(\)"):
        load_npz(path)


def test_data_npz_with_an_absurd_label_is_one_line(tmp_path: Path) -> None:
    """A label of 2**62 would make the class count allocate exabytes."""
    from edgekit.data import load_npz

    path = tmp_path / "d.npz"
    path.write_bytes(_npz(x=np.zeros((4, 2), np.float32), y=np.array([0, 1, 0, 2**62])))
    with pytest.raises(InputError, match="expected class indices below 65,536"):
        load_npz(path)


def test_device_input_file_with_a_bad_member_is_one_line(tmp_path: Path) -> None:
    """Before: the BadZipFile of a damaged member escaped ``python -m device_bench --input``."""
    from device_bench.interpreter import load_interpreter
    from device_bench.runner import BenchOptions, make_inputs

    path = tmp_path / "in.npz"
    path.write_bytes(_bad_crc())
    interp = load_interpreter(DATA / "seeds" / "cnn_int8.tflite").interpreter
    with pytest.raises(BenchInputError, match=r"is not a readable \.npy/\.npz file: Bad CRC-32"):
        make_inputs(interp, BenchOptions(input_path=str(path)))
