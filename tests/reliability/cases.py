"""The bad-input cases of ``tests/reliability/test_bad_inputs.py``: one real invocation each.

A case is a command line of ``edgekit`` or ``python -m device_bench`` (run in-process), the
files it needs (written into the case's own folder first), the exit code it must end with and
the words its one stderr line must hold: the input it names and what was expected. Ids start
with the category the reliability table counts them under (``tests/reliability/
reliability_table.py``): ``files-`` (missing, empty, truncated, random-byte and wrong-kind
files), ``data-`` (shapes, dtypes, NaN/Inf, empty or one-class data, labels outside the
model's classes, mismatched lengths), ``recipe-`` (unknown keys, out-of-range values, empty or
non-mapping recipes, bad flag values), ``paths-`` (output paths under a regular file or
otherwise unusable) and ``names-`` (hostile file names, which must *work*).

The shared inputs (:class:`Assets`) are built once per session by :func:`build_assets`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "tests" / "data" / "fuzz" / "seeds"
DEMO_REPORT = REPO / "tests" / "edgekit" / "data" / "demo_report.json"

# File names a shell would take apart; each must work as a plain name (and create nothing).
HOSTILE_NAMES = {
    "space": "my model",
    "quotes": "it's \"the\" model",
    "semicolon": "m;touch PWNED",
    "subshell": "m$(touch PWNED)",
    "backticks": "m`touch PWNED`",
    "newline": "m\ntouch PWNED",
    "non-ascii": "modèle-模型-ü",
}
# Id prefix -> the category of the reliability table.
CATEGORIES = {"files": "files", "data": "data", "recipe": "recipes", "paths": "paths",
              "names": "names"}
PNG = (SEEDS / "image.png").read_bytes()


@dataclass(frozen=True)
class Assets:
    """The session's valid inputs (never changed by a case).

    Attributes:
        root: Their folder.
        keras: A (6, 6, 1) -> 3 classes Keras model file.
        tflite: An int8 .tflite of the same shape (a committed fuzz seed).
        float_tflite: Its float32 twin (``--require-int8`` fails on it).
        npz: 60 samples for ``keras`` (x (60, 6, 6, 1) float32, y in 0..2).
        run: A run folder holding a real report.json (two of them can be compared).
    """

    root: Path
    keras: Path
    tflite: Path
    float_tflite: Path
    npz: Path
    run: Path


def build_assets(root: Path) -> Assets:
    """Writes the valid inputs every case starts from (the Keras model needs TensorFlow).

    Args:
        root: An empty folder.

    Returns:
        The :class:`Assets`.
    """
    from edgekit.core._keras import keras
    from edgekit.core.model_io import save_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((6, 6, 1), name="image"),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    kpath = save_model(model, root / "tiny.keras")
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", x=rng.random((60, 6, 6, 1), np.float32),
             y=np.arange(60, dtype=np.int64) % 3)
    shutil.copy(SEEDS / "cnn_int8.tflite", root / "int8.tflite")
    shutil.copy(SEEDS / "cnn_float32.tflite", root / "float32.tflite")
    (root / "run").mkdir()
    shutil.copy(DEMO_REPORT, root / "run" / "report.json")
    return Assets(root, kpath, root / "int8.tflite", root / "float32.tflite", root / "data.npz",
                  root / "run")


Setup = Callable[[Assets, Path], None]
Argv = Callable[[Assets, Path], list[str]]


@dataclass(frozen=True)
class Case:
    """One bad (or hostile but valid) input.

    Attributes:
        id: ``category-command-what``.
        prog: ``edgekit`` or ``device_bench``.
        argv: The command line (without the program), from the assets and the case folder.
        code: The exit code it must give.
        says: Words the one stderr line must hold (``{W}`` is the case folder, ``{A}`` the
            assets folder); empty for a case that must work.
        setup: Writes the case's own input files into the case folder first.
        makes: For a case that works: the files (relative to the case folder) it must create;
            nothing else may appear.
    """

    id: str
    prog: str
    argv: Argv
    code: int
    says: tuple[str, ...] = ()
    setup: Setup | None = None
    makes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def category(self) -> str:
        """The reliability table's category (``tests/reliability/reliability_table.py``)."""
        return CATEGORIES[self.id.split("-", 1)[0]]


# ---------------------------------------------------------------- file helpers
def _write(name: str, data: bytes | Callable[[Assets], bytes]) -> Setup:
    def setup(a: Assets, w: Path) -> None:
        (w / name).write_bytes(data(a) if callable(data) else data)
    return setup


def _npz(name: str, **arrays: object) -> Setup:
    def setup(a: Assets, w: Path) -> None:
        np.savez(w / name, **arrays)
    return setup


def _text(name: str, text: str) -> Setup:
    return _write(name, text.encode("utf-8"))


def _both(*setups: Setup) -> Setup:
    def setup(a: Assets, w: Path) -> None:
        for s in setups:
            s(a, w)
    return setup


def _recipe(name: str, body: dict | str) -> Setup:
    """A recipe file; ``{keras}``/``{npz}`` in a dict's values become the assets' paths."""
    def setup(a: Assets, w: Path) -> None:
        if isinstance(body, str):
            text = body
        else:
            text = json.dumps(body).replace("{keras}", str(a.keras)).replace("{npz}", str(a.npz))
        (w / name).write_text(text, encoding="utf-8")
    return setup


def _half(a: Assets) -> bytes:
    data = a.tflite.read_bytes()
    return data[: len(data) // 2]


def _random(size: int) -> bytes:
    return np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()


BLOCKER = _text("file", "a regular file, not a folder\n")
X = np.random.default_rng(1).random((60, 6, 6, 1)).astype(np.float32)
Y = (np.arange(60) % 3).astype(np.int64)
FAST_BENCH = ["--runs", "3", "--warmup", "1", "--min-seconds", "0.01", "--windows", "1"]
DB_FAST = ["--runs", "3", "--warmup", "1", "--warmup-seconds", "0", "--min-seconds", "0.01",
           "--windows", "1"]
GOOD_RECIPE = {"model": "{keras}", "data": "{npz}"}


def _nan_x(value: float = np.nan) -> np.ndarray:
    """X with one sample (row 5) holding ``value``."""
    x = X.copy()
    x[5, 2, 2, 0] = value
    return x


def _bad_labels() -> np.ndarray:
    y = Y.copy()
    y[y == 2] = 57
    return y


def _convert(data: str, *extra: str, mode: str = "float32") -> Argv:
    """``edgekit convert`` of the tiny model to ``{W}/m.tflite``; ``{W}``/``{A}``: folders."""
    def argv(a: Assets, w: Path) -> list[str]:
        return ["convert", str(a.keras), "--data", data.format(W=w, A=a.root), "--mode", mode,
                "--out", str(w / "m.tflite"), *(e.format(W=w, A=a.root) for e in extra)]
    return argv


def _compress(*extra: str, data: str | None = None) -> Argv:
    """``edgekit compress`` of the tiny model; ``{W}`` in the arguments is the case folder."""
    def argv(a: Assets, w: Path) -> list[str]:
        return ["compress", str(a.keras), "--data", data.format(W=w) if data else str(a.npz),
                *(e.format(W=w) for e in extra)]
    return argv


def _run(name: str = "r.yaml", *extra: str) -> Argv:
    return lambda a, w: ["run", str(w / name), "--out", str(w / "out"), *extra]


def _case_lists() -> list[Case]:
    c: list[Case] = []
    # ------------------------------------------------------------ files
    for what, setup, says in [
        ("missing", None, ("does not exist",)),
        ("empty", _write("m.tflite", b""), ("empty",)),
        ("truncated", _write("m.tflite", _half), ("TFLite",)),
        ("random", _write("m.tflite", _random(4096)), ("TFLite",)),
        ("png", _write("m.tflite", PNG), ("TFLite",)),
        ("folder", lambda a, w: (w / "m.tflite").mkdir(), ("not a file",)),
    ]:
        c.append(Case(f"files-inspect-{what}", "edgekit",
                      lambda a, w: ["inspect", str(w / "m.tflite")], 2,
                      ("{W}/m.tflite", *says), setup))
        c.append(Case(f"files-device_bench-{what}", "device_bench",
                      lambda a, w: [str(w / "m.tflite"), *DB_FAST], 2,
                      ("{W}/m.tflite", *says), setup))
    c += [
        Case("files-inspect-keras-file", "edgekit", lambda a, w: ["inspect", str(a.keras)], 2,
             ("{A}/tiny.keras", "TFLite")),
        Case("files-inspect-require-int8-on-float", "edgekit",
             lambda a, w: ["inspect", str(a.float_tflite), "--require-int8"], 1,
             ("{A}/float32.tflite", "not full-integer")),
        Case("files-bench-missing", "edgekit",
             lambda a, w: ["bench", str(w / "m.tflite"), *FAST_BENCH], 2,
             ("{W}/m.tflite", "does not exist")),
        Case("files-bench-png", "edgekit",
             lambda a, w: ["bench", str(w / "m.tflite"), *FAST_BENCH], 2,
             ("{W}/m.tflite", "TFLite"), _write("m.tflite", PNG)),
        Case("files-bench-truncated", "edgekit",
             lambda a, w: ["bench", str(w / "m.tflite"), *FAST_BENCH], 2,
             ("{W}/m.tflite", "TFLite"), _write("m.tflite", _half)),
        Case("files-convert-missing-model", "edgekit",
             lambda a, w: ["convert", str(w / "none.keras"), "--data", str(a.npz),
                           "--out", str(w / "m.tflite")], 2,
             ("{W}/none.keras", "does not exist")),
        Case("files-convert-empty-model", "edgekit",
             lambda a, w: ["convert", str(w / "m.keras"), "--data", str(a.npz),
                           "--out", str(w / "m.tflite")], 2,
             ("{W}/m.keras", "model"), _write("m.keras", b"")),
        Case("files-convert-png-as-model", "edgekit",
             lambda a, w: ["convert", str(w / "m.keras"), "--data", str(a.npz),
                           "--out", str(w / "m.tflite")], 2,
             ("{W}/m.keras", "model"), _write("m.keras", PNG)),
        Case("files-convert-random-h5", "edgekit",
             lambda a, w: ["convert", str(w / "m.h5"), "--data", str(a.npz),
                           "--out", str(w / "m.tflite")], 2,
             ("{W}/m.h5", "model"), _write("m.h5", _random(2048))),
        Case("files-convert-tflite-as-model", "edgekit",
             lambda a, w: ["convert", str(a.tflite), "--data", str(a.npz),
                           "--out", str(w / "m.tflite")], 2,
             ("{A}/int8.tflite", "model")),
        Case("files-convert-truncated-keras", "edgekit",
             lambda a, w: ["convert", str(w / "m.keras"), "--data", str(a.npz),
                           "--out", str(w / "m.tflite")], 2,
             ("{W}/m.keras", "model"),
             _write("m.keras", lambda a: a.keras.read_bytes()[:2000])),
        Case("files-compress-missing-teacher", "edgekit",
             _compress("--teacher", "/nonexistent/t.keras", "--out", "{W}/x.keras"), 2,
             ("/nonexistent/t.keras", "does not exist")),
        Case("files-convert-png-as-npz", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", "expected a zip"), _write("d.npz", PNG)),
        Case("files-convert-npy-as-npz", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", "zip"), lambda a, w: np.save(w / "d.npy", X) or
             (w / "d.npy").rename(w / "d.npz")),
        Case("files-convert-calibration-png", "edgekit",
             _convert("{A}/data.npz", "--calibration", "{W}/c.npy", mode="int8"), 2,
             ("{W}/c.npy", "expected a NumPy .npy"), _write("c.npy", PNG)),
        Case("files-convert-truncated-npz", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", ".npz"),
             _write("d.npz", lambda a: a.npz.read_bytes()[:700])),
        Case("files-convert-calibration-missing", "edgekit",
             _convert("{A}/data.npz", "--calibration", "/nonexistent/c.npy", mode="int8"), 2,
             ("/nonexistent/c.npy",)),
        Case("files-compare-missing", "edgekit",
             lambda a, w: ["compare", str(a.run), str(w / "none")], 2,
             ("{W}/none",)),
        Case("files-compare-folder-without-report", "edgekit",
             lambda a, w: ["compare", str(a.run), str(w / "r")], 2,
             ("{W}/r", "report.json"), lambda a, w: (w / "r").mkdir()),
        Case("files-compare-empty-report", "edgekit",
             lambda a, w: ["compare", str(a.run), str(w / "report.json")], 2,
             ("{W}/report.json", "JSON"), _write("report.json", b"")),
        Case("files-compare-png-report", "edgekit",
             lambda a, w: ["compare", str(w / "report.json"), str(a.run)], 2,
             ("{W}/report.json",), _write("report.json", PNG)),
        Case("files-compare-not-a-report", "edgekit",
             lambda a, w: ["compare", str(a.run), str(w / "report.json")], 2,
             ("{W}/report.json", "report"), _text("report.json", '[1, 2, 3]\n')),
        Case("files-compare-truncated-report", "edgekit",
             lambda a, w: ["compare", str(a.run), str(w / "report.json")], 2,
             ("{W}/report.json",),
             _write("report.json", lambda a: (a.run / "report.json").read_bytes()[:500])),
        Case("files-device_bench-input-missing", "device_bench",
             lambda a, w: [str(a.tflite), "--input", str(w / "none.npy"), *DB_FAST], 2,
             ("{W}/none.npy",)),
        Case("files-device_bench-input-png", "device_bench",
             lambda a, w: [str(a.tflite), "--input", str(w / "in.npy"), *DB_FAST], 2,
             ("{W}/in.npy", "expected a NumPy .npy"), _write("in.npy", PNG)),
    ]
    # ------------------------------------------------------------ data
    c += [
        Case("data-convert-wrong-shape", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", "(8, 8, 1)", "(6, 6, 1)"),
             _npz("d.npz", x=np.zeros((60, 8, 8, 1), np.float32), y=Y)),
        Case("data-convert-string-samples", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", "numeric"), _npz("d.npz", x=np.array([["a"] * 36] * 60), y=Y)),
        Case("data-convert-float-labels", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", "integer labels"), _npz("d.npz", x=X, y=Y.astype(np.float32))),
        Case("data-convert-nan", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", "NaN"), _npz("d.npz", x=_nan_x(), y=Y)),
        Case("data-convert-inf", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", "Inf"), _npz("d.npz", x=_nan_x(np.inf), y=Y)),
        Case("data-convert-empty", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz",), _npz("d.npz", x=np.zeros((0, 6, 6, 1), np.float32),
                                  y=np.zeros((0,), np.int64))),
        Case("data-convert-one-class", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", "class"), _npz("d.npz", x=X, y=np.zeros(60, np.int64))),
        Case("data-convert-labels-outside-classes", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", "[0, 3)", "57"), _npz("d.npz", x=X, y=_bad_labels())),
        Case("data-convert-mismatched-lengths", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", "60 samples", "50 labels"), _npz("d.npz", x=X, y=Y[:50])),
        Case("data-convert-missing-y", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", "'y'"), _npz("d.npz", x=X)),
        Case("data-convert-negative-labels", "edgekit", _convert("{W}/d.npz"), 2,
             ("{W}/d.npz", "non-negative"), _npz("d.npz", x=X, y=Y - 1)),
        Case("data-convert-unknown-spec", "edgekit", _convert("cifar"), 2,
             ("'cifar'", "expected 'digits'")),
        Case("data-convert-calibration-wrong-shape", "edgekit",
             _convert("{A}/data.npz", "--calibration", "{W}/c.npy", mode="int8"), 2,
             ("{W}/c.npy", "(6, 6, 1)"), _npz_like_npy("c.npy", np.zeros((8, 5), np.float32))),
        Case("data-convert-calibration-nan", "edgekit",
             _convert("{A}/data.npz", "--calibration", "{W}/c.npy", mode="int8"), 2,
             ("{W}/c.npy", "NaN or infinite"), _npz_like_npy("c.npy", _nan_x()[:10])),
        Case("data-compress-nan", "edgekit",
             _compress("--prune", "0.5", "--out", "{W}/never.keras", data="{W}/d.npz"), 2,
             ("{W}/d.npz", "NaN"), _npz("d.npz", x=_nan_x(), y=Y)),
        Case("data-compress-labels-outside-classes", "edgekit",
             _compress("--prune", "0.5", "--out", "{W}/never.keras", data="{W}/d.npz"), 2,
             ("{W}/d.npz", "57"), _npz("d.npz", x=X, y=_bad_labels())),
        Case("data-device_bench-input-wrong-shape", "device_bench",
             lambda a, w: [str(a.tflite), "--input", str(w / "in.npy"), *DB_FAST], 2,
             ("{W}/in.npy", "[1, 6, 6, 1]"),
             _npz_like_npy("in.npy", np.zeros((2, 7), np.float32))),
        Case("data-device_bench-input-nan", "device_bench",
             lambda a, w: [str(a.float_tflite), "--input", str(w / "in.npy"), *DB_FAST], 2,
             ("{W}/in.npy", "NaN"), _npz_like_npy("in.npy", _nan_x()[5:6])),
        Case("data-device_bench-input-empty", "device_bench",
             lambda a, w: [str(a.tflite), "--input", str(w / "in.npy"), *DB_FAST], 2,
             ("{W}/in.npy",), _npz_like_npy("in.npy", np.zeros((0, 6, 6, 1), np.float32))),
        Case("data-run-labels-outside-classes", "edgekit", _run(), 2,
             ("{W}/d.npz", "57"),
             _both(_npz("d.npz", x=X, y=_bad_labels()),
                   lambda a, w: (w / "r.yaml").write_text(json.dumps(
                       {"model": str(a.keras), "data": str(w / "d.npz")})))),
    ]
    # ------------------------------------------------------------ recipes and option values
    c += [
        Case("recipe-run-missing", "edgekit", _run("none.yaml"), 2,
             ("{W}/none.yaml", "does not exist")),
        Case("recipe-run-empty", "edgekit", _run(), 2, ("{W}/r.yaml", "empty"),
             _text("r.yaml", "")),
        Case("recipe-run-comments-only", "edgekit", _run(), 2, ("{W}/r.yaml", "empty"),
             _text("r.yaml", "# nothing here\n")),
        Case("recipe-run-a-list", "edgekit", _run(), 2, ("{W}/r.yaml", "mapping"),
             _text("r.yaml", "- model\n- data\n")),
        Case("recipe-run-a-number", "edgekit", _run("r.json"), 2, ("{W}/r.json", "mapping"),
             _text("r.json", "42\n")),
        Case("recipe-run-a-tflite", "edgekit",
             lambda a, w: ["run", str(a.tflite), "--out", str(w / "out")], 2,
             ("{A}/int8.tflite", ".yaml")),
        Case("recipe-run-tflite-named-yaml", "edgekit", _run(), 2, ("{W}/r.yaml",),
             _write("r.yaml", lambda a: a.tflite.read_bytes())),
        Case("recipe-run-png-named-json", "edgekit", _run("r.json"), 2, ("{W}/r.json",),
             _write("r.json", PNG)),
        Case("recipe-run-bad-yaml", "edgekit", _run(), 2, ("{W}/r.yaml", "YAML"),
             _text("r.yaml", "model: [demo_cnn\ndata: digits\n")),
        Case("recipe-run-unknown-key", "edgekit", _run(), 2, ("modle", "known"),
             _recipe("r.yaml", {**GOOD_RECIPE, "modle": "x"})),
        Case("recipe-run-unknown-nested-key", "edgekit", _run(), 2,
             ("{W}/r.yaml", "'mod'", "known keys: mode"),
             _recipe("r.yaml", {**GOOD_RECIPE, "convert": {"mod": "int8"}})),
        Case("recipe-run-unknown-stage", "edgekit", _run(), 2,
             ("{W}/r.yaml", "stages[0]", "Prnue", "known stages"),
             _recipe("r.yaml", {**GOOD_RECIPE, "stages": [{"class_name": "Prnue",
                                                          "config": {}}]})),
        Case("recipe-run-sparsity-out-of-range", "edgekit", _run(), 2,
             ("{W}/r.yaml", "stages[0]", "final_sparsity", "[0, 1)", "1.2"),
             _recipe("r.yaml", {**GOOD_RECIPE, "stages": [
                 {"class_name": "Prune", "config": {"final_sparsity": 1.2}}]})),
        Case("recipe-run-negative-epochs", "edgekit", _run(), 2,
             ("{W}/r.yaml", "train", "epochs", ">= 1", "-3"),
             _recipe("r.yaml", {"model": "demo_cnn", "data": "digits",
                                "train": {"epochs": -3}})),
        Case("recipe-run-zero-runs", "edgekit", _run(), 2,
             ("{W}/r.yaml", "bench", "runs", ">= 1", "0"),
             _recipe("r.yaml", {**GOOD_RECIPE, "bench": {"runs": 0}})),
        Case("recipe-run-bad-mode", "edgekit", _run(), 2, ("{W}/r.yaml", "convert", "int4", "int8"),
             _recipe("r.yaml", {**GOOD_RECIPE, "convert": {"mode": "int4"}})),
        Case("recipe-run-negative-budget", "edgekit", _run(), 2,
             ("{W}/r.yaml", "max_size_kb", ">= 0", "-1"),
             _recipe("r.yaml", {**GOOD_RECIPE, "budgets": {"max_size_kb": -1}})),
        Case("recipe-run-model-missing", "edgekit", _run(), 2, ("/nonexistent/m.keras",),
             _recipe("r.yaml", {"model": "/nonexistent/m.keras", "data": "digits"})),
        Case("recipe-run-wrong-suffix", "edgekit", _run("r.txt"), 2, ("{W}/r.txt", ".yaml"),
             _text("r.txt", "model: demo_cnn\n")),
        Case("recipe-run-plan-unknown-key", "edgekit", _run("r.yaml", "--plan"), 2,
             ("colour", "known"), _recipe("r.yaml", {**GOOD_RECIPE, "colour": "red"})),
        Case("recipe-inspect-misspelled-flag", "edgekit",
             lambda a, w: ["inspect", str(a.tflite), "--json-out", str(w / "i.json"),
                           "--require-int9"], 2,
             ("'--require-int9'", "edgekit inspect", "known options", "--require-int8")),
        Case("recipe-bench-misspelled-flag", "edgekit",
             lambda a, w: ["bench", str(a.tflite), *FAST_BENCH, "--wramup", "5", "--json",
                           str(w / "b.json")], 2, ("'--wramup'", "--warmup")),
        Case("recipe-run-misspelled-flag", "edgekit", _run("r.yaml", "--resum"), 2,
             ("'--resum'", "edgekit run", "--resume"), _recipe("r.yaml", GOOD_RECIPE)),
        Case("recipe-convert-missing-model", "edgekit",
             lambda a, w: ["convert", "--out", str(w / "m.tflite")], 2,
             ("edgekit convert", "needs MODEL")),
        Case("recipe-models-extra-argument", "edgekit", lambda a, w: ["models", "all"], 2,
             ("'all'", "no arguments")),
        Case("recipe-unknown-command", "edgekit", lambda a, w: ["optimise", str(a.keras)], 2,
             ("'edgekit optimise'", "expected one of", "convert")),
        Case("recipe-data-unknown-set", "edgekit", lambda a, w: ["data", "cifar10"], 2,
             ("'edgekit data cifar10'", "kws")),
        Case("recipe-device_bench-unknown-flag", "device_bench",
             lambda a, w: [str(a.tflite), "--bogus", "5"], 2, ("--bogus",)),
        Case("recipe-bench-zero-runs", "edgekit",
             lambda a, w: ["bench", str(a.tflite), "--runs", "0"], 2, ("runs", "0")),
        Case("recipe-bench-negative-threads", "edgekit",
             lambda a, w: ["bench", str(a.tflite), "--threads", "-2", *FAST_BENCH], 2,
             ("threads", "-2")),
        Case("recipe-bench-unknown-target", "edgekit",
             lambda a, w: ["bench", str(a.tflite), "--target", "nowhere://x", *FAST_BENCH], 2,
             ("nowhere://x",)),
        Case("recipe-bench-unknown-energy", "edgekit",
             lambda a, w: ["bench", str(a.tflite), "--energy", "magic", *FAST_BENCH], 2,
             ("magic",)),
        Case("recipe-convert-bad-mode", "edgekit", _convert("{A}/data.npz", mode="int4"), 2,
             ("int4", "int8")),
        Case("recipe-convert-bad-io", "edgekit",
             _convert("{A}/data.npz", "--io", "int3", mode="int8"), 2, ("int3",)),
        Case("recipe-convert-calibration-unused", "edgekit",
             _convert("{A}/data.npz", "--calibration", "{A}/data.npz", mode="float16"), 2,
             ("--calibration", "int8", "float16")),
        Case("recipe-convert-zero-samples", "edgekit",
             _convert("{A}/data.npz", "--samples", "0", mode="int8"), 2, ("samples", "0")),
        Case("recipe-convert-out-not-tflite", "edgekit",
             lambda a, w: ["convert", str(a.keras), "--out", str(w / "m.onnx")], 2,
             ("{W}/m.onnx", ".tflite")),
        Case("recipe-compress-nothing-to-do", "edgekit",
             _compress("--out", "{W}/never.keras"), 2, ("nothing to do",)),
        Case("recipe-compress-sparsity-out-of-range", "edgekit",
             _compress("--prune", "1.5", "--out", "{W}/never.keras"), 2,
             ("final_sparsity", "1.5")),
        Case("recipe-compress-channels-out-of-range", "edgekit",
             _compress("--channels", "1.0", "--out", "{W}/never.keras"), 2, ("1.0",)),
        Case("recipe-compress-qat-to-keras", "edgekit",
             _compress("--qat", "--out", "{W}/never.keras"), 2, ("{W}/never.keras", ".h5")),
        Case("recipe-compress-out-suffix", "edgekit",
             _compress("--prune", "0.5", "--out", "{W}/never.tflite"), 2,
             ("{W}/never.tflite", ".keras")),
        Case("recipe-compress-unknown-importance", "edgekit",
             _compress("--channels", "0.5", "--importance", "magic", "--out",
                       "{W}/never.keras"), 2, ("magic",)),
        Case("recipe-data-kws-out-not-npz", "edgekit",
             lambda a, w: ["data", "kws", "--out", str(w / "k.csv")], 2, ("{W}/k.csv", ".npz")),
        Case("recipe-data-kws-zero-takes", "edgekit",
             lambda a, w: ["data", "kws", "--out", str(w / "k.npz"), "--takes", "0"], 2,
             ("takes", "0")),
        Case("recipe-device_bench-zero-runs", "device_bench",
             lambda a, w: [str(a.tflite), "--runs", "0"], 2, ("runs", "0")),
        Case("recipe-device_bench-not-a-number", "device_bench",
             lambda a, w: [str(a.tflite), "--threads", "many"], 2, ("--threads", "many")),
        Case("recipe-device_bench-target-kind", "device_bench",
             lambda a, w: [str(a.tflite), "--target-kind", "Local Box"], 2, ("Local Box",)),
        Case("recipe-device_bench-unknown-energy", "device_bench",
             lambda a, w: [str(a.tflite), "--energy", "magic", *DB_FAST], 2, ("magic",)),
    ]
    # ------------------------------------------------------------ output paths
    c += [
        Case("paths-inspect-json-under-a-file", "edgekit",
             lambda a, w: ["inspect", str(a.tflite), "--json-out", str(w / "file" / "i.json")],
             2, ("{W}/file", "output folder"), BLOCKER),
        Case("paths-bench-json-under-a-file", "edgekit",
             lambda a, w: ["bench", str(a.tflite), *FAST_BENCH, "--json",
                           str(w / "file" / "b.json")], 2, ("{W}/file", "output folder"),
             BLOCKER),
        Case("paths-convert-out-under-a-file", "edgekit",
             lambda a, w: ["convert", str(a.keras), "--data", str(a.npz), "--mode", "float32",
                           "--out", str(w / "file" / "m.tflite")], 2, ("{W}/file", "folder"),
             BLOCKER),
        Case("paths-convert-out-is-a-folder", "edgekit",
             lambda a, w: ["convert", str(a.keras), "--data", str(a.npz), "--mode", "float32",
                           "--out", str(w / "m.tflite")], 2, ("{W}/m.tflite", "folder"),
             lambda a, w: (w / "m.tflite").mkdir()),
        Case("paths-compress-out-under-a-file", "edgekit",
             lambda a, w: ["compress", str(a.keras), "--data", str(a.npz), "--prune", "0.5",
                           "--out", str(w / "file" / "m.keras")], 2, ("{W}/file", "folder"),
             BLOCKER),
        Case("paths-run-out-is-a-file", "edgekit",
             lambda a, w: ["run", str(w / "r.yaml"), "--out", str(w / "file")], 2,
             ("{W}/file", "folder"), _both(BLOCKER, _recipe("r.yaml", GOOD_RECIPE))),
        Case("paths-run-out-under-a-file", "edgekit",
             lambda a, w: ["run", str(w / "r.yaml"), "--out", str(w / "file" / "out")], 2,
             ("{W}/file", "folder"), _both(BLOCKER, _recipe("r.yaml", GOOD_RECIPE))),
        Case("paths-run-junit-under-a-file", "edgekit",
             lambda a, w: ["run", str(w / "r.yaml"), "--out", str(w / "out"), "--junit",
                           str(w / "file" / "j.xml")], 2,
             ("{W}/file", "folder"), _both(BLOCKER, _recipe("r.yaml", GOOD_RECIPE))),
        Case("paths-data-kws-out-under-a-file", "edgekit",
             lambda a, w: ["data", "kws", "--out", str(w / "file" / "k.npz")], 2,
             ("{W}/file", "output folder"), BLOCKER),
        Case("paths-device_bench-json-under-a-file", "device_bench",
             lambda a, w: [str(a.tflite), *DB_FAST, "--json", str(w / "file" / "b.json")], 2,
             ("{W}/file", "output folder"), BLOCKER),
    ]
    # ------------------------------------------------------------ hostile names (must work)
    for key, name in HOSTILE_NAMES.items():
        c.append(Case(f"names-inspect-{key}", "edgekit",
                      _named(lambda a, w, n: ["inspect", str(w / f"{n}.tflite"), "--json-out",
                                              str(w / f"{n} out.json")], name), 0,
                      setup=_copy_as(name, ".tflite"),
                      makes=(f"{name}.tflite", f"{name} out.json")))
        c.append(Case(f"names-device_bench-{key}", "device_bench",
                      _named(lambda a, w, n: [str(w / f"{n}.tflite"), *DB_FAST, "--json",
                                              str(w / f"{n}.json")], name), 0,
                      setup=_copy_as(name, ".tflite"),
                      makes=(f"{name}.tflite", f"{name}.json")))
    name = "".join(HOSTILE_NAMES.values()).replace("\n", " ")
    c += [
        Case("names-bench-local-all-at-once", "edgekit",
             _named(lambda a, w, n: ["bench", str(w / f"{n}.tflite"), *FAST_BENCH, "--json",
                                     str(w / f"{n}.json")], name), 0,
             setup=_copy_as(name, ".tflite"), makes=(f"{name}.tflite", f"{name}.json")),
        Case("names-convert-all-at-once", "edgekit",
             _named(lambda a, w, n: ["convert", str(w / f"{n}.keras"), "--data",
                                     str(w / f"{n}.npz"), "--mode", "float32", "--out",
                                     str(w / f"{n} out.tflite")], name), 0,
             setup=_both(_copy_as(name, ".keras"), _copy_as(name, ".npz")),
             makes=(f"{name}.keras", f"{name}.npz", f"{name} out.tflite")),
        Case("names-compress-all-at-once", "edgekit",
             _named(lambda a, w, n: ["compress", str(w / f"{n}.keras"), "--data",
                                     str(w / f"{n}.npz"), "--prune", "0.5", "--epochs", "1",
                                     "--out", str(w / f"{n} out.keras")], name), 0,
             setup=_both(_copy_as(name, ".keras"), _copy_as(name, ".npz")),
             makes=(f"{name}.keras", f"{name}.npz", f"{name} out.keras")),
        Case("names-compare-all-at-once", "edgekit",
             _named(lambda a, w, n: ["compare", str(w / n), str(w / n / "report.json")], name),
             0, setup=_copy_run(name), makes=(f"{name}/report.json",)),
        Case("names-run-plan-all-at-once", "edgekit",
             _named(lambda a, w, n: ["run", str(w / f"{n}.yaml"), "--plan"], name), 0,
             setup=lambda a, w: _recipe(f"{name}.yaml", GOOD_RECIPE)(a, w),
             makes=(f"{name}.yaml",)),
    ]
    return c


def _npz_like_npy(name: str, array: np.ndarray) -> Setup:
    def setup(a: Assets, w: Path) -> None:
        np.save(w / name, array)
    return setup


def _named(fn: Callable[[Assets, Path, str], list[str]], name: str) -> Argv:
    return lambda a, w: fn(a, w, name)


def _copy_as(name: str, suffix: str) -> Setup:
    def setup(a: Assets, w: Path) -> None:
        src = {".tflite": a.tflite, ".keras": a.keras, ".npz": a.npz}[suffix]
        shutil.copy(src, w / f"{name}{suffix}")
    return setup


def _copy_run(name: str) -> Setup:
    def setup(a: Assets, w: Path) -> None:
        (w / name).mkdir()
        shutil.copy(a.run / "report.json", w / name / "report.json")
    return setup


CASES: list[Case] = _case_lists()
