"""Writes the fuzzers' seed files: small real models, data files and images (committed).

``tests/data/fuzz/seeds/`` holds what the fuzz targets mutate (``tests/fuzz/fuzz_inputs.py``):
``.tflite`` models made by the real converter from tiny tf_keras models (int8 MLP and CNN with
conv, depthwise conv, pooling and a dense head; the same CNN as float32 and float16, so the
DEQUANTIZE path is seeded; a two-input float model), a data ``.npz`` (``x``, ``y``), a
calibration ``.npz`` (``x``) and small PNG (RGB and grey), JPEG, BMP and GIF images. The
recipe seeds are ``examples/recipes/*.yaml`` themselves.

It also writes the regression inputs of ``tests/data/fuzz/`` (:data:`REGRESSIONS`): each crash
that fuzzing found, as the smallest edit of a seed that shows it.

Run from the repository root (needs TensorFlow; the fuzzers do not)::

    .venv/bin/python tests/fuzz/make_seeds.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "tests" / "data" / "fuzz" / "seeds"


def _models() -> dict[str, tuple[object, np.ndarray]]:
    """The tiny Keras models and the calibration samples of each."""
    from edgekit.core._keras import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    mlp = keras.Sequential([keras.layers.Input((8,), name="features"),
                            keras.layers.Dense(6, activation="relu"), keras.layers.Dense(3)])
    inp = keras.Input((6, 6, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    cnn = keras.Model(inp, keras.layers.Dense(3)(x), name="cnn")
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    two = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Add()([a, b])))
    return {"mlp": (mlp, rng.random((16, 8), np.float32)),
            "cnn": (cnn, rng.random((16, 6, 6, 1), np.float32)),
            "two_inputs": (two, rng.random((16, 3), np.float32))}


def _convert(model: object, x: np.ndarray, mode: str) -> bytes:
    from edgekit.core._keras import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        def representative():
            for i in range(len(x)):
                yield [x[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def main() -> int:
    """Writes every seed file; prints one line per file."""
    SEEDS.mkdir(parents=True, exist_ok=True)
    models = _models()
    wanted = [("mlp", "int8"), ("cnn", "int8"), ("cnn", "float32"), ("cnn", "float16"),
              ("two_inputs", "float32")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, mode in wanted:
            model, x = models[name]
            path = SEEDS / f"{name}_{mode}.tflite"
            path.write_bytes(_convert(model, x, mode))
            print(f"{path.relative_to(REPO)}  {path.stat().st_size} bytes")
    rng = np.random.default_rng(1)
    data = SEEDS / "data.npz"
    np.savez(data, x=rng.random((8, 6, 6, 1), np.float32), y=np.arange(8) % 2)
    calib = SEEDS / "calibration.npz"
    np.savez(calib, x=rng.random((4, 6, 6, 1), np.float32))
    written = [data, calib]
    from PIL import Image  # matplotlib's dependency; only this script uses it

    pixels = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    for name, mode, size in (("image.png", "RGB", (6, 6)), ("image_grey.png", "L", (6, 6)),
                             ("image.jpg", "RGB", (8, 5)), ("image.bmp", "RGB", (6, 6)),
                             ("image.gif", "P", (6, 6))):
        img = Image.fromarray(pixels).convert(mode).resize(size)
        img.save(SEEDS / name)
        written.append(SEEDS / name)
    for path in written:
        print(f"{path.relative_to(REPO)}  {path.stat().st_size} bytes")
    write_regressions()
    return 0




# ---------------------------------------------------------------- regression inputs
# Each crash fuzzing found, as the smallest edit of a seed model that shows it (the files in
# tests/data/fuzz/; tests/fuzz/test_fuzz_regressions.py says what each must give now).
def _opcode(model: object, name: str) -> int:
    from ai_edge_litert import schema_py_generated as schema

    code = getattr(schema.BuiltinOperator, name)
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == code:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _edit_input_constant(m: object) -> None:  # SIGSEGV in set_tensor: it writes a weight
    m.subgraphs[0].inputs = [2]


def _edit_op_writes_constant(m: object) -> None:  # SIGSEGV in invoke
    m.subgraphs[0].tensors[3].buffer = 2


def _edit_output_minus_one(m: object) -> None:  # abort (double free) freeing the interpreter
    m.subgraphs[0].outputs = [-1]


def _edit_fc_weights_left_out(m: object) -> None:  # SIGSEGV: FULLY_CONNECTED reads input 1
    op = m.subgraphs[0].operators[-1]
    op.inputs = [int(op.inputs[0]), -1, -1]


def _edit_depthwise_two_inputs(m: object) -> None:  # SIGSEGV at the first invoke
    op = m.subgraphs[0].operators[1]
    op.inputs = [int(i) for i in op.inputs[:2]]


def _edit_split_with_conv_options(m: object) -> None:  # SIGSEGV: SPLIT with depthwise options
    m.subgraphs[0].operators[1].opcodeIndex = _opcode(m, "SPLIT")


def _edit_fewer_zero_points(m: object) -> None:  # IndexError in inspect (_quant)
    t = m.subgraphs[0].tensors[2]
    t.quantization.zeroPoint = t.quantization.zeroPoint[:0]


def _edit_bad_quantized_dimension(m: object) -> None:  # IndexError in weight_sparsity
    m.subgraphs[0].tensors[2].quantization.quantizedDimension = 4


def _edit_conv_one_input(m: object) -> None:  # IndexError in the XNNPACK check
    op = m.subgraphs[0].operators[0]
    op.inputs = [int(op.inputs[0])]


def _edit_depthwise_conv_options(m: object) -> None:  # AttributeError in the XNNPACK check
    from ai_edge_litert import schema_py_generated as schema

    sg = m.subgraphs[0]
    sg.operators[0].opcodeIndex = _opcode(m, "DEPTHWISE_CONV_2D")
    sg.operators[0].builtinOptionsType = schema.BuiltinOptions.Conv2DOptions


def _edit_dequantize_cycle(m: object) -> None:  # RecursionError: a DEQUANTIZE reads its output
    for op in m.subgraphs[0].operators:
        if m.operatorCodes[op.opcodeIndex].builtinCode == 6:  # DEQUANTIZE
            op.inputs = [int(op.outputs[0])]
            return


def _edit_weight_type_mismatch(m: object) -> None:  # ValueError: 18 bytes are no float32s
    m.subgraphs[0].tensors[1].type = 0  # FLOAT32 over the int8 weights


REGRESSIONS = [
    ("input_is_constant", "mlp_int8", _edit_input_constant),
    ("op_writes_constant", "mlp_int8", _edit_op_writes_constant),
    ("output_minus_one", "cnn_int8", _edit_output_minus_one),
    ("fc_weights_left_out", "cnn_float32", _edit_fc_weights_left_out),
    ("depthwise_two_inputs", "cnn_int8", _edit_depthwise_two_inputs),
    ("split_with_conv_options", "cnn_int8", _edit_split_with_conv_options),
    ("fewer_zero_points", "cnn_int8", _edit_fewer_zero_points),
    ("bad_quantized_dimension", "cnn_int8", _edit_bad_quantized_dimension),
    ("conv_one_input", "cnn_float32", _edit_conv_one_input),
    ("depthwise_conv_options", "cnn_float32", _edit_depthwise_conv_options),
    ("dequantize_cycle", "cnn_float16", _edit_dequantize_cycle),
    ("weight_type_mismatch", "mlp_int8", _edit_weight_type_mismatch),
]


def write_regressions(only: tuple[str, ...] = ()) -> None:
    """Writes tests/data/fuzz/NAME.tflite for every entry of :data:`REGRESSIONS` (or ``only``)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    for name, seed, edit in REGRESSIONS:
        if only and name not in only:
            continue
        model = schema.ModelT.InitFromPackedBuf((SEEDS / f"{seed}.tflite").read_bytes(), 0)
        edit(model)
        builder = flatbuffers.Builder(4096)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        path = SEEDS.parent / f"{name}.tflite"
        path.write_bytes(bytes(builder.Output()))
        print(f"{path.relative_to(REPO)}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
