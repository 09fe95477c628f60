"""Keras 3 model files -> tf_keras models (architecture + weights), proven by comparing outputs.

tfmot needs Keras 2 (tf_keras), but TensorFlow 2.16+ saves Keras 3 files by default. The bridge:

1. reads the Keras 3 architecture (``config.json`` of a ``.keras`` zip, or the ``model_config``
   attribute of an ``.h5``) and rewrites it for tf_keras: DTypePolicy dicts become policy names,
   ``batch_shape`` becomes ``batch_input_shape``, Keras 3 call nodes (``{"args", "kwargs"}`` with
   ``__keras_tensor__`` entries) become tf_keras inbound-node lists, options tf_keras does not have
   are dropped only while they hold their neutral value (``quantization_config: null``, ...);
2. refuses, with the layer's name and class, any layer tf_keras has no equivalent for (Keras 3
   only layers, custom classes, ``Lambda`` code written against ``keras.ops``, Keras 3 ops);
3. builds the tf_keras model, loads the Keras 3 model with Keras 3 itself (the ``keras`` package,
   which stays Keras 3 when ``TF_USE_LEGACY_KERAS=1`` selects tf_keras for ``tf.keras``) and copies
   the weights layer by layer, matched by layer name and weight order with shapes checked;
4. runs both on seeded sample inputs and accepts the bridge only when the largest absolute output
   difference is at most ``tolerance`` (1e-5) times ``max(1, largest |output|)``.
"""

from __future__ import annotations

import inspect
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core._keras import keras, keras3, tf
from edgekit.core.errors import InputError

__all__ = ["BridgeResult", "bridge_keras3", "check_same_outputs", "is_keras3_file",
           "read_keras3_config", "translate_model_config"]

MODEL_CLASSES = ("Functional", "Sequential", "Model")
# Keras 3 options with no tf_keras counterpart: dropped when they hold this (neutral) value.
NEUTRAL_OPTIONS: dict[str, Any] = {
    "quantization_config": None,
    "lora_rank": None,
    "lora_alpha": None,
    "input_axes": None,
    "output_axes": None,
    "optional": False,
    "seed_generator": None,
}
# Options that tf_keras names differently, per class.
RENAMED_OPTIONS: dict[str, dict[str, str]] = {
    "InputLayer": {"batch_shape": "batch_input_shape"},
    "LeakyReLU": {"negative_slope": "alpha"},
}
# Classes tf_keras has, but whose saved state cannot carry over from Keras 3.
UNBRIDGEABLE: dict[str, str] = {
    "Lambda": "its Python function is written against Keras 3 (keras.ops); rebuild it from "
              "built-in layers",
    "TFSMLayer": "it wraps a SavedModel, not layers",
}
# Keyword arguments every tf_keras layer accepts (tf_keras engine/base_layer.py, Layer.__init__).
BASE_LAYER_KWARGS = frozenset({
    "name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
    "batch_size", "weights", "activity_regularizer", "autocast", "implementation",
})
SERIALIZED_MODULES = {
    "keras.initializers": "initializers",
    "keras.regularizers": "regularizers",
    "keras.constraints": "constraints",
}


@dataclass(frozen=True)
class BridgeResult:
    """A Keras 3 file bridged to tf_keras.

    Attributes:
        model: The tf_keras model (weights copied).
        source: The Keras 3 file.
        keras_version: The Keras version that saved it.
        layers: Number of layers bridged (nested models' layers included).
        weights: Number of weight arrays copied.
        samples: Number of seeded sample inputs compared.
        max_abs_diff: Largest absolute difference between the two models' outputs.
    """

    model: keras.Model
    source: str
    keras_version: str
    layers: int
    weights: int
    samples: int
    max_abs_diff: float

    def to_dict(self) -> dict[str, Any]:
        """Returns the JSON-ready facts (everything but the model)."""
        return {"source": self.source, "keras_version": self.keras_version,
                "layers": self.layers, "weights": self.weights, "samples": self.samples,
                "max_abs_diff": self.max_abs_diff}


# -- reading ------------------------------------------------------------------------------------
def _h5_attrs(path: Path) -> dict[str, Any]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {k: (v.decode("utf-8") if isinstance(v, bytes) else v)
                    for k, v in f.attrs.items()}
    except OSError:
        return {}


def saved_keras_version(path: str | os.PathLike[str]) -> str:
    """The Keras version recorded in a ``.keras`` zip or ``.h5`` file ("" when none is)."""
    p = Path(path)
    if p.suffix == ".keras":
        try:
            with zipfile.ZipFile(p) as archive:
                meta = json.loads(archive.read("metadata.json").decode("utf-8"))
        except (KeyError, zipfile.BadZipFile, OSError, ValueError):
            return ""
        return str(meta.get("keras_version", "")) if isinstance(meta, dict) else ""
    if p.suffix in (".h5", ".hdf5") and p.is_file():
        return str(_h5_attrs(p).get("keras_version", ""))
    return ""


def is_keras3_file(path: str | os.PathLike[str]) -> bool:
    """Tells whether ``path`` is a ``.keras``/``.h5`` model file written by Keras 3."""
    return saved_keras_version(path).startswith("3.")


def read_keras3_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads the architecture of a Keras 3 file without loading it.

    Args:
        path: A ``.keras`` zip or ``.h5`` file saved by Keras 3.

    Returns:
        ``{"class_name", "config", ...}`` of the model.

    Raises:
        InputError: The file holds no readable architecture.
    """
    p = Path(path)
    try:
        if p.suffix == ".keras":
            with zipfile.ZipFile(p) as archive:
                raw = archive.read("config.json").decode("utf-8")
        else:
            raw = _h5_attrs(p).get("model_config")
            if raw is None:
                raise InputError(f"model {str(p)!r} holds weights only (no model_config); "
                                 "expected a whole model saved with model.save()")
        config = json.loads(raw)
    except (KeyError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise InputError(f"model {str(p)!r}: the Keras 3 architecture cannot be read: {e}") from e
    if not isinstance(config, dict) or "class_name" not in config:
        raise InputError(f"model {str(p)!r}: unexpected architecture record {str(config)[:80]}")
    return config


# -- translating the architecture ---------------------------------------------------------------
def _accepted_options(cls: type) -> set[str] | None:
    """Keyword arguments ``cls`` accepts (None: any, it forwards **kwargs somewhere unknown)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names - {"self"}
        if klass is keras.layers.Layer:
            return (names | BASE_LAYER_KWARGS) - {"self"}
    return None


def _filter_options(config: dict[str, Any], cls: type, where: str) -> dict[str, Any]:
    accepted = _accepted_options(cls)
    if accepted is None:
        return config
    out = {}
    for key, value in config.items():
        if key in accepted:
            out[key] = value
        elif value is None or (key in NEUTRAL_OPTIONS and value == NEUTRAL_OPTIONS[key]):
            continue  # a Keras 3 option at its neutral value: nothing to carry over
        else:
            raise InputError(f"{where}: option {key}={value!r} has no tf_keras equivalent")
    return out


def _policy_name(obj: dict[str, Any], where: str) -> str:
    name = str((obj.get("config") or {}).get("name", "float32"))
    if obj.get("class_name") == "QuantizedDTypePolicy" or name.startswith("int"):
        raise InputError(f"{where}: dtype policy {name!r} is a Keras 3 quantized layer; "
                         "bridge the float model and let edgekit quantize it")
    return name


def _translate_value(value: Any, where: str) -> Any:
    """Rewrites one config value (recursively) from Keras 3 to tf_keras form."""
    if isinstance(value, list):
        return [_translate_value(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    cls_name = value.get("class_name")
    if cls_name is None or "config" not in value:
        return {k: _translate_value(v, where) for k, v in value.items()}
    if str(cls_name).endswith("DTypePolicy"):
        return _policy_name(value, where)
    if cls_name in ("__numpy__", "__tensor__"):
        return value["config"].get("value")
    module = value.get("module")
    attr = SERIALIZED_MODULES.get(str(module))
    target = getattr(getattr(keras, attr), str(cls_name), None) if attr else None
    if target is None:
        raise InputError(f"{where}: {module or 'object'} {cls_name!r} has no tf_keras equivalent")
    inner = _filter_options(dict(value["config"] or {}), target, f"{where} ({cls_name})")
    return {"class_name": cls_name, "config": inner}


def _layer_where(entry: dict[str, Any]) -> str:
    name = entry.get("name") or (entry.get("config") or {}).get("name")
    return f"layer {name!r} ({entry.get('class_name')})"


def _check_bridgeable(entry: dict[str, Any]) -> None:
    cls_name = str(entry.get("class_name"))
    module = entry.get("module")
    where = _layer_where(entry)
    if cls_name in MODEL_CLASSES:
        return
    if cls_name in UNBRIDGEABLE:
        raise InputError(f"{where} cannot be bridged to tf_keras: {UNBRIDGEABLE[cls_name]}")
    registered = entry.get("registered_name")
    if (module is not None and module != "keras.layers") or (
        registered and registered != cls_name
    ):
        kind = f"registered as {registered!r}" if registered else f"from module {module!r}"
        raise InputError(f"{where} is not a built-in Keras layer ({kind}); it has no tf_keras "
                         "equivalent: rebuild the model from built-in layers")
    if not hasattr(keras.layers, cls_name):
        raise InputError(f"{where} has no tf_keras equivalent (Keras 3 only layer); rebuild "
                         "the model without it")


def _layer_config(entry: dict[str, Any]) -> dict[str, Any]:
    """Translates one layer's config (not a nested model's)."""
    cls_name = str(entry["class_name"])
    where = _layer_where(entry)
    config = dict(entry.get("config") or {})
    for old, new in RENAMED_OPTIONS.get(cls_name, {}).items():
        if old in config:
            config[new] = config.pop(old)
    config = {k: _translate_value(v, where) for k, v in config.items()}
    config = _filter_options(config, getattr(keras.layers, cls_name), where)
    try:  # build it alone, so that a failure names the layer
        keras.layers.deserialize({"class_name": cls_name, "config": config})
    except Exception as e:  # tf_keras raises ValueError, TypeError, KeyError ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{where} cannot be rebuilt in tf_keras: {first}") from e
    return config


def _collect_tensors(value: Any, out: list[list[Any]], where: str) -> None:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = value["config"]["keras_history"]
        out.append([history[0], int(history[1]), int(history[2])])
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect_tensors(v, out, where)
    else:
        raise InputError(f"{where} is called with a non-tensor argument {value!r}; the bridge "
                         "handles layers called on tensors")


def _has_tensor(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get("class_name") == "__keras_tensor__" or any(
            _has_tensor(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    return False


def _translate_node(node: Any, where: str, offsets: dict[str, int]) -> list[list[Any]]:
    """One Keras 3 call node -> tf_keras ``[[layer, node, tensor, kwargs], ...]``.

    ``offsets`` shifts node indices of nested models: tf_keras numbers a nested model's calls
    from 1 (its node 0 links its own Input to its outputs), Keras 3 from 0.
    """
    if isinstance(node, list):  # already the tf_keras form
        return node
    args, kwargs = node.get("args", []), dict(node.get("kwargs") or {})
    if len(args) != 1:
        raise InputError(f"{where} is called with {len(args)} positional arguments; the bridge "
                         "handles one (a tensor or a list of tensors)")
    if _has_tensor(kwargs):
        raise InputError(f"{where} gets a tensor as a keyword argument ({sorted(kwargs)}); the "
                         "bridge handles tensors passed positionally")
    tensors: list[list[Any]] = []
    _collect_tensors(args[0], tensors, where)
    if not tensors:
        raise InputError(f"{where} is called without an input tensor")
    entries = [[name, index + offsets.get(name, 0), tensor, {}] for name, index, tensor in tensors]
    entries[0][3] = kwargs
    return entries


def _io_list(value: Any, offsets: dict[str, int]) -> list[Any]:
    """``["name", 0, 0]`` (one input) or a list of those -> a list of those (indices shifted)."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        value = [value]
    return [[name, int(index) + offsets.get(name, 0), int(tensor)]
            for name, index, tensor in value]


def _has_own_input(translated: dict[str, Any]) -> bool:
    """tf_keras skips the first node of nested Functional models and of Sequential ones that
    start with an InputLayer (engine/functional.py, ``_should_skip_first_node``)."""
    if translated["class_name"] != "Sequential":
        return True
    layers = translated["config"]["layers"]
    return bool(layers) and layers[0]["class_name"] == "InputLayer"


def translate_model_config(entry: dict[str, Any]) -> dict[str, Any]:
    """Rewrites a Keras 3 model record for tf_keras.

    Args:
        entry: ``{"class_name": "Functional"|"Sequential", "config": {...}}`` as Keras 3 wrote it.

    Returns:
        ``{"class_name", "config"}`` that ``keras.layers.deserialize`` (tf_keras) builds.

    Raises:
        InputError: A layer with no tf_keras equivalent (the message names it and its class), or
            a model that is neither Sequential nor Functional.
    """
    cls_name = str(entry.get("class_name"))
    config = dict(entry.get("config") or {})
    if cls_name not in MODEL_CLASSES or "layers" not in config:
        raise InputError(f"model {config.get('name', '?')!r} is a {cls_name} (subclassed) Keras 3 "
                         "model; the bridge handles Sequential and Functional models")
    layers = []
    offsets: dict[str, int] = {}
    for layer in config["layers"]:
        _check_bridgeable(layer)
        if layer["class_name"] in MODEL_CLASSES:
            out = dict(translate_model_config(layer))
            if _has_own_input(out):
                offsets[str(layer.get("name"))] = 1
        else:
            out = {"class_name": layer["class_name"], "config": _layer_config(layer)}
        layers.append(out)
    if cls_name != "Sequential":
        for layer, out in zip(config["layers"], layers, strict=True):
            out["name"] = layer["name"]
            out["inbound_nodes"] = [_translate_node(n, _layer_where(layer), offsets)
                                    for n in layer.get("inbound_nodes", [])]
    translated: dict[str, Any] = {"name": config.get("name"), "layers": layers}
    if cls_name == "Sequential":
        if config.get("build_input_shape") is not None:
            translated["build_input_shape"] = config["build_input_shape"]
        return {"class_name": "Sequential", "config": translated}
    translated["input_layers"] = _io_list(config["input_layers"], offsets)
    translated["output_layers"] = _io_list(config["output_layers"], offsets)
    _check_references(translated, offsets)
    return {"class_name": "Functional", "config": translated}


def _check_references(config: dict[str, Any], offsets: dict[str, int]) -> None:
    """Refuses references to missing layers or calls (tf_keras would wait for them forever)."""
    calls = {out["name"]: (1 if out["class_name"] == "InputLayer" else len(out["inbound_nodes"]))
             + offsets.get(out["name"], 0) for out in config["layers"]}
    refs = [ref for out in config["layers"] for node in out["inbound_nodes"] for ref in node]
    for ref in refs + config["input_layers"] + config["output_layers"]:
        name, index = ref[0], int(ref[1])
        if name not in calls or index >= calls[name]:
            raise InputError(f"model {config.get('name')!r}: the graph refers to call {index} of "
                             f"layer {name!r}, which does not exist in the saved architecture")


# -- weights and verification -------------------------------------------------------------------
def _is_model(layer: Any) -> bool:
    return hasattr(layer, "layers") and isinstance(getattr(layer, "layers", None), list)


def copy_weights(source: Any, target: keras.Model) -> tuple[int, int]:
    """Copies every layer's weights from the Keras 3 ``source`` into the tf_keras ``target``.

    Layers are matched by name (nested models recursively), weights by order, shapes checked.

    Args:
        source: The Keras 3 model.
        target: The tf_keras model built from its translated config.

    Returns:
        (layers visited, weight arrays copied).

    Raises:
        InputError: A layer missing on one side, or a weight count/shape mismatch.
    """
    by_name = {layer.name: layer for layer in source.layers}
    layers = arrays = 0
    for layer in target.layers:
        src = by_name.get(layer.name)
        if src is None:
            raise InputError(f"layer {layer.name!r} of the bridged model has no Keras 3 "
                             "counterpart of that name")
        layers += 1
        if _is_model(layer):
            sub_layers, sub_arrays = copy_weights(src, layer)
            layers, arrays = layers + sub_layers, arrays + sub_arrays
            continue
        values = [np.asarray(w) for w in src.get_weights()]
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise InputError(f"layer {layer.name!r} ({type(layer).__name__}): Keras 3 weights "
                             f"have shapes {got}, tf_keras expects {expected}")
        if values:
            layer.set_weights(values)
            arrays += len(values)
    return layers, arrays


def sample_inputs(model: keras.Model, samples: int, seed: int) -> list[np.ndarray]:
    """Seeded inputs for every model input: uniform [0, 1) floats, or 0/1 for integer inputs."""
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shape = (samples, *[d if d is not None else 4 for d in t.shape[1:]])
        dtype = tf.as_dtype(t.dtype)
        if dtype.is_integer or dtype.is_bool:
            out.append(rng.integers(0, 2, size=shape).astype(dtype.as_numpy_dtype))
        else:
            out.append(rng.random(shape, dtype=np.float64).astype(np.float32))
    return out


def _outputs(fn: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    result = fn(inputs[0] if len(inputs) == 1 else inputs, training=False)
    return [np.asarray(o, dtype=np.float64) for o in tf.nest.flatten(result)]


def check_same_outputs(reference: Any, bridged: Any, inputs: list[np.ndarray], *,
                       tolerance: float = 1e-5, name: str = "model") -> float:
    """Runs both models on ``inputs`` and checks that their outputs agree.

    Args:
        reference: The original model (callable as ``m(x, training=False)``).
        bridged: The bridged model.
        inputs: One array per model input.
        tolerance: Allowed max abs difference, times ``max(1, largest |reference output|)``.
        name: The model, for the message.

    Returns:
        The largest absolute difference.

    Raises:
        InputError: Different numbers/shapes of outputs, or a difference above the tolerance.
    """
    ref, got = _outputs(reference, inputs), _outputs(bridged, inputs)
    if [r.shape for r in ref] != [g.shape for g in got]:
        raise InputError(f"{name}: the bridged model's output shapes {[g.shape for g in got]} "
                         f"differ from the Keras 3 model's {[r.shape for r in ref]}")
    diff = max((float(np.max(np.abs(r - g))) if r.size else 0.0)
               for r, g in zip(ref, got, strict=True))
    scale = max([1.0] + [float(np.max(np.abs(r))) for r in ref if r.size])
    if not diff <= tolerance * scale:
        raise InputError(f"{name}: the bridged tf_keras model differs from the Keras 3 model by "
                         f"{diff:.3g} (max abs) on {len(inputs[0])} seeded inputs; expected <= "
                         f"{tolerance * scale:.3g}")
    return diff


def bridge_keras3(path: str | os.PathLike[str], *, samples: int = 8, seed: int = 0,
                  tolerance: float = 1e-5) -> BridgeResult:
    """Loads a Keras 3 ``.keras``/``.h5`` file as a tf_keras model and proves the two agree.

    Args:
        path: The Keras 3 model file.
        samples: Seeded sample inputs to compare outputs on.
        seed: Seed of those inputs.
        tolerance: Allowed max abs output difference (times ``max(1, largest |output|)``).

    Returns:
        The :class:`BridgeResult` (``.model`` is the tf_keras model).

    Raises:
        InputError: A layer or option with no tf_keras equivalent (named), a file Keras 3 cannot
            load, or outputs that differ.
    """
    p = Path(path)
    version = saved_keras_version(p)
    entry = read_keras3_config(p)
    translated = translate_model_config(entry)
    try:
        model = keras.layers.deserialize(translated)
    except Exception as e:  # tf_keras raises many types while wiring the graph
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"model {str(p)!r}: the tf_keras graph cannot be built: {first}") from e
    k3 = keras3()
    try:
        original = k3.saving.load_model(str(p), compile=False)
    except Exception as e:  # Keras 3 raises ValueError, TypeError, OSError ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"model {str(p)!r} could not be loaded by Keras 3: {first}") from e
    layers, arrays = copy_weights(original, model)
    inputs = sample_inputs(model, samples, seed)
    diff = check_same_outputs(original, model, inputs, tolerance=tolerance, name=f"model {p.name}")
    return BridgeResult(model=model, source=str(p), keras_version=version, layers=layers,
                        weights=arrays, samples=samples, max_abs_diff=diff)
