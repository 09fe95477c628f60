"""Hypothesis strategies for the fuzzers: real seed files, mutated at the byte and field level.

Seeds are real files: the ``.tflite`` models, the data and calibration ``.npz`` and the images of
``tests/data/fuzz/seeds/`` (written by ``tests/fuzz/make_seeds.py`` with the real converter) and
the recipes of ``examples/recipes/``. Every strategy mixes three kinds of input:

* byte mutations of a seed (bit flips, bytes, "interesting" 32-bit words such as 0 or 2**31-1,
  truncation, deletion, insertion, copying a chunk elsewhere), which exercise the structure;
* field mutations (a ``.tflite`` re-packed with one index, shape, type, quantization or option
  changed; a recipe tree with one value replaced), which keep the structure valid and reach the
  meaning: that is where the interpreter crashes were;
* hostile inputs written for the purpose (YAML tags that would run code, alias bombs, deep
  nesting; arrays of every dtype, object arrays).
"""

from __future__ import annotations

import copy
import functools
import io
import struct
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "tests" / "data" / "fuzz" / "seeds"
RECIPES = REPO / "examples" / "recipes"

# 32-bit words that break offsets, lengths and indices.
WORDS = (0, 1, 2, 3, 4, 8, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE,
         0xFFFFFFFF)
# Values for int32 index fields (tensor, opcode, subgraph, buffer indices).
INDICES = (-(2**31), -2, -1, 0, 1, 2, 3, 4, 5, 7, 11, 15, 16, 100, 2**31 - 1)
SMALL = (-128, -2, -1, 0, 1, 2, 3, 4, 127)


@functools.cache
def seed_bytes(pattern: str) -> tuple[bytes, ...]:
    """The seed files matching ``pattern`` (sorted by name), as bytes."""
    found = tuple(p.read_bytes() for p in sorted(SEEDS.glob(pattern)))
    if not found:
        raise FileNotFoundError(f"no seed {pattern} in {SEEDS}; run tests/fuzz/make_seeds.py")
    return found


@functools.cache
def recipe_texts() -> tuple[str, ...]:
    """The example recipes' YAML texts."""
    return tuple(p.read_text(encoding="utf-8") for p in sorted(RECIPES.glob("*.yaml")))


@st.composite
def mutate(draw: st.DrawFn, data: bytes, max_steps: int = 6) -> bytes:
    """Applies 1..``max_steps`` byte mutations to ``data``."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, max_steps))):
        if not out:
            out = bytearray(draw(st.binary(min_size=1, max_size=8)))
        pos = draw(st.integers(0, len(out) - 1))
        op = draw(st.integers(0, 7))
        if op == 0:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            out[pos] = draw(st.integers(0, 255))
        elif op in (2, 3):  # a word, aligned as flatbuffer offsets are (or not)
            at = pos & ~3 if op == 2 else pos
            out[at:at + 4] = struct.pack("<I", draw(st.sampled_from(WORDS)))
        elif op == 4:
            del out[pos:]
        elif op == 5:
            del out[pos:pos + draw(st.integers(1, 32))]
        elif op == 6:
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            src = draw(st.integers(0, len(out) - 1))
            n = draw(st.integers(1, 64))
            out[pos:pos + n] = out[src:src + n]
    return bytes(out)


def mutated_seed(pattern: str, max_steps: int = 6) -> st.SearchStrategy[bytes]:
    """A byte-mutated copy of one of the seeds matching ``pattern``."""
    return st.sampled_from(seed_bytes(pattern)).flatmap(lambda d: mutate(d, max_steps))


# ---------------------------------------------------------------- .tflite field mutations
@functools.cache
def _parsed_seeds() -> tuple[Any, ...]:
    from ai_edge_litert import schema_py_generated as schema

    return tuple(schema.ModelT.InitFromPackedBuf(d, 0) for d in seed_bytes("*.tflite"))


def _pack(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _index_list(draw: st.DrawFn, values: Any) -> list[int]:
    items = [int(v) for v in (values if values is not None else [])]
    if items and draw(st.booleans()):
        items[draw(st.integers(0, len(items) - 1))] = draw(st.sampled_from(INDICES))
    elif draw(st.booleans()):
        items.append(draw(st.sampled_from(INDICES)))
    else:
        items = items[: draw(st.integers(0, len(items)))]
    return items


@st.composite
def tflite_field_mutation(draw: st.DrawFn) -> bytes:
    """A seed model with 1..3 fields changed, re-packed (so its structure stays valid)."""
    model = copy.deepcopy(draw(st.sampled_from(_parsed_seeds())))
    for _ in range(draw(st.integers(1, 3))):
        if not model.subgraphs:
            break
        sg = model.subgraphs[0]
        ops, tensors = sg.operators or [], sg.tensors or []
        what = draw(st.integers(0, 13))
        if what == 0 and ops:
            op = draw(st.sampled_from(ops))
            op.inputs = _index_list(draw, op.inputs)
        elif what == 1 and ops:
            op = draw(st.sampled_from(ops))
            op.outputs = _index_list(draw, op.outputs)
        elif what == 2 and ops:
            draw(st.sampled_from(ops)).opcodeIndex = draw(st.sampled_from(
                [i for i in INDICES if i >= 0]))
        elif what == 3 and tensors:
            draw(st.sampled_from(tensors)).buffer = draw(st.sampled_from(
                [i for i in INDICES if i >= 0]))
        elif what == 4:
            sg.inputs = _index_list(draw, sg.inputs)
        elif what == 5:
            sg.outputs = _index_list(draw, sg.outputs)
        elif what == 6 and tensors:
            t = draw(st.sampled_from(tensors))
            dims = st.sampled_from((-(2**31), -1, 0, 1, 2, 3, 6, 36, 2**16, 2**31 - 1))
            shape = draw(st.lists(dims, max_size=6))
            if draw(st.booleans()):
                t.shape = shape
            else:
                t.shapeSignature = shape
        elif what == 7 and tensors:
            draw(st.sampled_from(tensors)).type = draw(st.integers(-1, 30).filter(lambda v: v >= 0)
                                                       | st.sampled_from((127,)))
        elif what == 8 and tensors:
            t = draw(st.sampled_from(tensors))
            q = t.quantization
            if q is not None:
                n = draw(st.integers(0, 5))
                floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
                if draw(st.booleans()):
                    q.scale = np.asarray(draw(st.lists(floats, min_size=n, max_size=n)),
                                         np.float32)
                if draw(st.booleans()):
                    q.zeroPoint = np.asarray(draw(st.lists(st.integers(-(2**40), 2**40),
                                                           min_size=n, max_size=n)), np.int64)
                q.quantizedDimension = draw(st.sampled_from((0, 1, 3, 4, 100, 2**31 - 1)))
        elif what == 9 and model.operatorCodes:
            code = draw(st.sampled_from(model.operatorCodes))
            code.builtinCode = draw(st.integers(0, 210) | st.sampled_from((1000, 2**31 - 1)))
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        elif what == 10 and ops:
            op = draw(st.sampled_from(ops))
            opts = op.builtinOptions
            names = [k for k, v in vars(opts).items() if isinstance(v, int)] if opts else []
            if names:
                setattr(opts, draw(st.sampled_from(names)), draw(st.sampled_from(SMALL)))
        elif what == 11 and model.buffers:
            buf = draw(st.sampled_from(model.buffers))
            buf.offset = draw(st.sampled_from((0, 1, 2, 8, 2**20, 2**40)))
            buf.size = draw(st.sampled_from((0, 1, 16, 2**20, 2**40)))
        elif what == 12:
            if model.signatureDefs and draw(st.booleans()):
                sig = model.signatureDefs[0]
                sig.subgraphIndex = draw(st.sampled_from((0, 1, 2, 2**31 - 1)))
                for m in (sig.inputs or []) + (sig.outputs or []):
                    m.tensorIndex = draw(st.sampled_from([i for i in INDICES if i >= 0]))
            else:
                sg.operators = ops[: draw(st.integers(0, len(ops)))]
        elif what == 13:
            if draw(st.booleans()):
                model.subgraphs = []
            elif model.metadata:
                draw(st.sampled_from(model.metadata)).buffer = draw(st.sampled_from(
                    (0, 1, 100, 2**31 - 1)))
    try:
        return _pack(model)
    except (TypeError, struct.error, OverflowError):  # a value the field type cannot hold
        return _pack(draw(st.sampled_from(_parsed_seeds())))


def tflite_inputs() -> st.SearchStrategy[bytes]:
    """Any ``.tflite``-like bytes: mutated seeds, field mutations, and arbitrary bytes."""
    return st.one_of(
        mutated_seed("*.tflite"),
        tflite_field_mutation(),
        tflite_field_mutation().flatmap(lambda d: mutate(d, 2)),
        st.binary(max_size=64).map(lambda b: b[:4] + b"TFL3" + b[4:]),
        st.binary(max_size=32),
    )


# ---------------------------------------------------------------- recipes
HOSTILE_YAML = (
    "model: !!python/object/apply:os.system ['touch PWNED']\n",
    "!!python/object/new:os.system [echo PWNED]\n",
    "model: !!python/name:os.system\n",
    "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nsweep: {seed: *c}\n",
    "sweep: {seed: &s [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], convert.calibration_seed: *s, "
    "convert.calibration_samples: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], bench.runs: "
    "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], bench.warmup: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}\n",
    "[" * 5000 + "]" * 5000,
    "{a: " * 3000 + "1" + "}" * 3000,
    "model: 1e999999\ndata: .inf\nseed: 0x7fffffffffffffffffff\n",
    "model: !!binary aGVsbG8=\n",
    "model: 2020-01-01\ndata: 2020-01-01 10:00:00\n",
    "stages: !!set {a, b}\n",
    "<<: {model: demo_cnn}\n",
    "model: demo_cnn\nmodel: other\n",
    "\ufeffmodel: demo_cnn\n",
    "--- a\n--- b\n",
    "%YAML 9.9\n---\nmodel: x\n",
    "? [a, b]\n: c\n",
)

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from((0, 1, -1)),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(("", "digits", "kws", "demo_cnn", "int8", "local", "Prune", "QAT",
                     "../x.npz", "x.keras", "ssh://h", "p50", "2:4", "auto", "none", "~",
                     "a.b.0.c", "stages.0.config.final_sparsity")),
)
VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, (*prefix, i))
    return found


@st.composite
def recipe_tree_mutation(draw: st.DrawFn) -> Any:
    """An example recipe's tree with 1..3 nodes replaced, deleted, or keys added."""
    tree = yaml.safe_load(draw(st.sampled_from(recipe_texts())))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(tree)))
        if not path:
            tree = draw(VALUES) if draw(st.integers(0, 9)) == 0 else tree
            continue
        parent: Any = tree
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.integers(0, 3))
        if action == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == 1 and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(VALUES)
        elif action == 2:
            parent[path[-1]] = [parent[path[-1]]]
        else:
            parent[path[-1]] = draw(VALUES)
    return tree


def _dump(tree: Any, as_json: bool) -> bytes:
    import json

    if as_json:
        return json.dumps(tree).encode()
    return yaml.safe_dump(tree, allow_unicode=True).encode("utf-8")


def recipe_inputs() -> st.SearchStrategy[tuple[str, bytes]]:
    """``(suffix, file bytes)`` of a recipe: mutated texts and trees, and hostile YAML."""
    texts = st.sampled_from(recipe_texts()).map(lambda t: t.encode("utf-8"))
    yaml_bytes = st.one_of(
        texts.flatmap(lambda b: mutate(b, 4)),
        recipe_tree_mutation().map(lambda t: _dump(t, False)),
        st.sampled_from(HOSTILE_YAML).map(lambda t: t.encode("utf-8")),
        st.text(max_size=80).map(lambda t: t.encode("utf-8")),
        st.binary(max_size=40),
    )
    json_bytes = st.one_of(recipe_tree_mutation().map(lambda t: _dump(t, True)),
                           recipe_tree_mutation().map(lambda t: _dump(t, True)).flatmap(
                               lambda b: mutate(b, 3)))
    return st.one_of(st.tuples(st.just(".yaml"), yaml_bytes), st.tuples(st.just(".json"),
                                                                       json_bytes))


# ---------------------------------------------------------------- .npz / .npy
DTYPES = ("float32", "float64", "float16", ">f4", "int8", "uint8", "int16", "int32", "int64",
          ">i8", "uint64", "bool", "complex64", "<U3", "S3", "datetime64[s]", "timedelta64[s]",
          "V4", [("a", "<i4"), ("b", "<f4")])
SHAPES = st.one_of(st.just(()), hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=7),
                   st.sampled_from(((8, 6, 6, 1), (4, 6, 6, 1), (8,), (8, 36), (1, 6, 6, 1))))


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """A small array of any dtype and shape (values include NaN, inf and extremes)."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(SHAPES)
    if dtype.kind in "fciub":
        return draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(dtype)))
    return np.zeros(shape, dtype)


@st.composite
def npz_bytes(draw: st.DrawFn) -> bytes:
    """An ``.npz`` written by numpy: arrays named x, y or else (an object array sometimes)."""
    names = draw(st.lists(st.sampled_from(("x", "y", "image", "a", "b", "x/y", "")),
                          max_size=3, unique=True))
    items: dict[str, Any] = {}
    for name in names:
        if draw(st.integers(0, 15)) == 0:
            items[name] = np.array([{"a": 1}, None], dtype=object)
        else:
            items[name] = draw(arrays())
    buf = io.BytesIO()
    try:
        np.savez(buf, **items)
    except (ValueError, TypeError):
        return seed_bytes("data.npz")[0]
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """The ``.npy`` file numpy writes for ``array`` (pickled when it holds objects)."""
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def array_file_inputs() -> st.SearchStrategy[tuple[str, bytes]]:
    """``(suffix, file bytes)`` of an ``.npz`` / ``.npy``: numpy-written, mutated, random."""
    npz = st.one_of(npz_bytes(), mutated_seed("*.npz", 4), npz_bytes().flatmap(
        lambda b: mutate(b, 2)), st.binary(max_size=64))
    npy = st.one_of(arrays().map(npy_bytes), arrays().map(npy_bytes).flatmap(
        lambda b: mutate(b, 2)), st.just(npy_bytes(np.array([object()], dtype=object))))
    return st.one_of(st.tuples(st.just(".npz"), npz), st.tuples(st.just(".npy"), npy))


# ---------------------------------------------------------------- image folders
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@st.composite
def image_folders(draw: st.DrawFn) -> dict[str, list[tuple[str, bytes]]]:
    """``{class folder: [(file name, bytes)]}``: seed images, mutated images, random bytes."""
    images = st.one_of(st.sampled_from(seed_bytes("image*")), mutated_seed("image*", 4),
                       st.binary(max_size=48))
    files = st.lists(st.tuples(st.sampled_from(IMAGE_SUFFIXES), images), min_size=0,
                     max_size=3)
    classes = draw(st.lists(st.sampled_from(("a", "b", "c", ".hidden", "d e")), min_size=0,
                            max_size=3, unique=True))
    return {c: [(f"{i}{suffix}", data) for i, (suffix, data) in enumerate(draw(files))]
            for c in classes}
