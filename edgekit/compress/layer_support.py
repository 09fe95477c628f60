"""Which layers of a real model tfmot can prune or quantize, which are left, and why.

tfmot's whole-model calls fail on the first layer they do not know (``prune_low_magnitude`` on
``Rescaling``, ``quantize_model`` on ``TFOpLambda``, standalone ``BatchNormalization`` or a
nested model). edgekit instead decides layer by layer, wraps only what tfmot supports and what
the user selected, and reports every other layer with the reason it was left.

This module holds the three pieces both stages share:

* :func:`flatten_model` inlines nested Functional/Sequential models into one functional graph
  (tfmot's ``clone_model`` does not recurse into them).
* :class:`LayerSelection` picks layers by names, regex and layer types, with an ``exclude`` part;
  it serializes to a plain mapping for recipes.
* :class:`LayerDecision` and :func:`summarize` are the per-layer report: name, type,
  action (``pruned`` | ``quantized`` | ``left``), reason, and the parameter count behind it.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgekit.compress.base import SerializableStage
from edgekit.core._keras import keras, tf
from edgekit.core.checks import check_keys
from edgekit.core.errors import InputError

__all__ = [
    "LayerDecision",
    "LayerFilter",
    "LayerSelection",
    "flatten_model",
    "is_graph_model",
    "model_layers",
    "summarize",
]

ACTIONS = ("pruned", "quantized", "left")
_FILTER_KEYS = ("names", "regex", "types")


def is_graph_model(model: Any) -> bool:
    """Whether ``model`` is a Sequential or Functional tf_keras model (not subclassed)."""
    return isinstance(model, keras.Model) and (
        isinstance(model, keras.Sequential) or bool(getattr(model, "_is_graph_network", False))
    )


def model_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers without its InputLayers."""
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


# -- selection ------------------------------------------------------------------------------


def _str_tuple(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{what} must be a list of strings, got {value!r}")
    return tuple(value)


def _class_names(layer: keras.layers.Layer) -> set[str]:
    """Names of the layer's class and its base classes (``Conv2D`` also matches ``Conv``)."""
    return {c.__name__ for c in type(layer).__mro__}


@dataclass(frozen=True)
class LayerFilter:
    """Layers named in ``names``, or whose name matches ``regex``, or whose type is in ``types``.

    Attributes:
        names: Exact layer names.
        regex: A regular expression searched in each layer name (``re.search``).
        types: Layer class names (``Conv2D``, ``Dense``); a base-class name matches subclasses.
    """

    names: tuple[str, ...] = ()
    regex: str | None = None
    types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", _str_tuple(self.names, "names"))
        object.__setattr__(self, "types", _str_tuple(self.types, "types"))
        if self.regex is not None:
            if not isinstance(self.regex, str):
                raise InputError(f"regex must be a string, got {self.regex!r}")
            try:
                re.compile(self.regex)
            except re.error as e:
                raise InputError(f"regex {self.regex!r} is not a valid regular expression: {e}") \
                    from e

    @property
    def empty(self) -> bool:
        """Whether the filter names nothing."""
        return not self.names and self.regex is None and not self.types

    def match(self, layer: keras.layers.Layer) -> str | None:
        """Says why ``layer`` matches (``"names"``, ``"regex"``, ``"types: Dense"``), or None."""
        if layer.name in self.names:
            return "names"
        if self.regex is not None and re.search(self.regex, layer.name):
            return f"regex {self.regex!r}"
        hit = _class_names(layer).intersection(self.types)
        if hit:
            return f"types: {sorted(hit)[0]}"
        return None

    def check(self, layers: Sequence[keras.layers.Layer], where: str) -> None:
        """Refuses names, types or a regex that fit no layer of the model (likely typos).

        Args:
            layers: The model's layers.
            where: Where the filter sits, for the message (``"layers"``, ``"layers.exclude"``).

        Raises:
            InputError: A name or type that no layer has (similar ones are listed), or a regex
                that matches no layer name.
        """
        names = [layer.name for layer in layers]
        for name in self.names:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
                hint = f"similar names: {', '.join(close)}" if close else (
                    f"layer names are like: {', '.join(names[:8])}")
                raise InputError(f"{where}.names: no layer named {name!r} in the model; {hint}")
        known_types = set().union(*(_class_names(layer) for layer in layers)) if layers else set()
        keras_types = {n for n in dir(keras.layers) if isinstance(getattr(keras.layers, n), type)}
        for t in self.types:
            if t not in known_types and t not in keras_types:
                close = difflib.get_close_matches(t, sorted(known_types | keras_types), n=5)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise InputError(f"{where}.types: unknown layer type {t!r}{hint}")
        if self.regex is not None and not any(re.search(self.regex, n) for n in names):
            raise InputError(
                f"{where}.regex {self.regex!r} matches no layer name; names are like: "
                f"{', '.join(names[:8])}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping with only the criteria that are set (lists, not tuples)."""
        out: dict[str, Any] = {}
        if self.names:
            out["names"] = list(self.names)
        if self.regex is not None:
            out["regex"] = self.regex
        if self.types:
            out["types"] = list(self.types)
        return out

    @classmethod
    def from_dict(cls, config: Any, where: str) -> LayerFilter:
        """Builds a filter from ``{names, regex, types}``; InputError on unknown keys."""
        config = check_keys(config, _FILTER_KEYS, where)
        try:
            return cls(**config)
        except InputError as e:
            raise InputError(f"{where}.{e}") from e


@dataclass(frozen=True)
class LayerSelection:
    """Which layers a stage may touch: those ``include`` picks (all when empty), minus ``exclude``.

    In a recipe: ``layers: {names: [...], regex: "...", types: [Conv2D, Dense],
    exclude: {names: [...], regex: "...", types: [...]}}``. Layers the stage cannot handle are
    left whatever the selection says.

    Attributes:
        include: Layers to consider (an empty filter means every layer).
        exclude: Layers never to touch.
    """

    include: LayerFilter = LayerFilter()
    exclude: LayerFilter = LayerFilter()

    @property
    def everything(self) -> bool:
        """Whether the selection picks every layer."""
        return self.include.empty and self.exclude.empty

    def decide(self, layer: keras.layers.Layer) -> str | None:
        """Returns None when ``layer`` is selected, else why it is not."""
        why = self.exclude.match(layer)
        if why is not None:
            return f"excluded by selection (layers.exclude {why})"
        if not self.include.empty and self.include.match(layer) is None:
            return "excluded by selection (not matched by layers.names/regex/types)"
        return None

    def check(self, model: keras.Model) -> None:
        """Validates names, types and regexes against ``model`` (see :meth:`LayerFilter.check`)."""
        layers = model_layers(model)
        self.include.check(layers, "layers")
        self.exclude.check(layers, "layers.exclude")

    def to_dict(self) -> dict[str, Any] | None:
        """``{names, regex, types, exclude: {...}}`` with the set criteria; None when empty."""
        if self.everything:
            return None
        out = self.include.to_dict()
        if not self.exclude.empty:
            out["exclude"] = self.exclude.to_dict()
        return out

    @classmethod
    def parse(cls, config: Any) -> LayerSelection:
        """Builds a selection from a recipe value (a mapping, None, or a LayerSelection).

        Raises:
            InputError: Not a mapping, unknown keys, wrong value types or a bad regex.
        """
        if config is None:
            return cls()
        if isinstance(config, LayerSelection):
            return config
        config = check_keys(config, (*_FILTER_KEYS, "exclude"), "layers")
        include = LayerFilter.from_dict({k: v for k, v in config.items() if k != "exclude"},
                                        "layers")
        exclude = LayerFilter.from_dict(config.get("exclude") or {}, "layers.exclude")
        return cls(include=include, exclude=exclude)


# -- report ---------------------------------------------------------------------------------


def param_count(layer: keras.layers.Layer) -> int:
    """Number of scalar weights the layer owns (trainable and not)."""
    return int(sum(int(w.shape.num_elements() or 0) for w in layer.weights))


class LayerSelectingStage(SerializableStage):
    """A stage with a ``layers`` field (a :class:`LayerSelection`): Prune and QAT."""

    layers: Any

    def parse_layers(self) -> None:
        """Replaces the ``layers`` mapping by its parsed selection (None: every layer).

        Raises:
            InputError: A bad selection (see :meth:`LayerSelection.parse`).
        """
        selection = LayerSelection.parse(self.layers)
        object.__setattr__(self, "layers", None if selection.everything else selection)

    def get_config(self) -> dict[str, Any]:
        """The config as plain values (``layers`` as a mapping, or None)."""
        config = super().get_config()
        config["layers"] = self.selection.to_dict()
        return config

    @property
    def selection(self) -> LayerSelection:
        """The layer selection (every layer when ``layers`` is None)."""
        return self.layers if isinstance(self.layers, LayerSelection) else LayerSelection()


@dataclass(frozen=True)
class LayerDecision:
    """What a stage did with one layer.

    Attributes:
        name: Layer name (in the flattened model).
        type: Layer class name.
        action: ``pruned``, ``quantized`` or ``left``.
        reason: Why (what was wrapped, or why it was left).
        params: Parameters the layer owns.
        touched_params: Parameters the action covers (the pruned kernels; all of a quantized
            layer's parameters; 0 when left).
    """

    name: str
    type: str
    action: str
    reason: str
    params: int = 0
    touched_params: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {self.action!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{name, type, action, reason, params}``."""
        return {"name": self.name, "type": self.type, "action": self.action,
                "reason": self.reason, "params": self.params}


def summarize(decisions: Sequence[LayerDecision], total_params: int) -> dict[str, Any]:
    """The report part shared by both stages.

    Args:
        decisions: One per layer.
        total_params: Parameters of the whole model.

    Returns:
        ``{"layers": [...], "counts": {action: n}, "weights_share": touched / total,
        "left_with_weights": {name: reason}}``.
    """
    counts = {a: sum(1 for d in decisions if d.action == a) for a in ACTIONS}
    touched = sum(d.touched_params for d in decisions)
    return {
        "layers": [d.to_dict() for d in decisions],
        "counts": counts,
        "weights_share": round(touched / total_params, 6) if total_params else 0.0,
        "left_with_weights": {d.name: d.reason for d in decisions
                              if d.action == "left" and d.params},
    }


# -- what tfmot supports --------------------------------------------------------------------

# Activations tfmot's 8-bit scheme handles inside Conv/Dense (QuantizeAwareActivation) and as an
# Activation layer (Default8BitActivationQuantizeConfig); anything else raises in quantize_apply.
_QAT_LAYER_ACTIVATIONS = frozenset({"linear", "relu", "swish", "gelu", "softmax", "sigmoid",
                                    "tanh"})
_QAT_ACTIVATION_LAYER = frozenset({"relu", "swish", "gelu", "relu6", "linear", "softmax",
                                   "sigmoid", "tanh"})
# Producers tfmot folds a following BatchNormalization into (default_8bit_transforms patterns).
_BN_PRODUCERS = frozenset({"Conv2D", "DepthwiseConv2D", "Dense", "SeparableConv2D"})


def _activation_name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def prunable_weights(layer: keras.layers.Layer) -> tuple[list[Any], str | None]:
    """The weights tfmot would prune in ``layer``, or why it prunes none.

    Args:
        layer: A layer of a flattened model.

    Returns:
        ``(weights, None)`` when tfmot can prune ``layer``, else ``([], reason)``.
    """
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import (
        PruneRegistry,
    )

    from edgekit.core._keras import tfmot

    kind = type(layer).__name__
    if not layer.weights:
        return [], f"{kind}: no weights"
    if isinstance(layer, tfmot.sparsity.keras.PrunableLayer) or hasattr(
            layer, "get_prunable_weights"):
        weights = list(layer.get_prunable_weights())
    elif PruneRegistry.supports(layer):
        weights = list(PruneRegistry.make_prunable(layer).get_prunable_weights())
    else:
        return [], (f"{kind}: not supported by tfmot pruning (not in its registry, "
                    "no get_prunable_weights)")
    if not weights:
        return [], f"{kind}: tfmot prunes none of its weights"
    return weights, None


def _linear(layer: keras.layers.Layer) -> bool:
    act = getattr(layer, "activation", None)
    return act is None or _activation_name(act) == "linear"


def _single_producer(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    nodes = layer.inbound_nodes
    if len(nodes) != 1:
        return None
    inbound = tf.nest.flatten(nodes[0].inbound_layers)
    return inbound[0] if len(inbound) == 1 else None


def _feeds_only(producer: keras.layers.Layer, model: keras.Model) -> bool:
    """Whether ``producer`` has one call and one consumer, and is not a model output."""
    if len(producer.inbound_nodes) != 1 or len(producer.outbound_nodes) != 1:
        return False
    out_ids = {id(t) for t in model.outputs}
    return id(producer.output) not in out_ids


def quantize_reason(layer: keras.layers.Layer, model: keras.Model, annotated: set[str],
                    prune_preserve: bool) -> str | None:
    """Why tfmot's 8-bit QAT cannot take ``layer``, or None when it can be annotated.

    Args:
        layer: A layer of the flattened ``model``.
        model: The flattened model (for BatchNormalization's producer).
        annotated: Names already chosen for annotation (layers earlier in graph order).
        prune_preserve: Whether the prune-preserving scheme is used (it supports fewer layers).

    Returns:
        None if the layer can be annotated, else the reason it is left.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (  # noqa: E501
        prune_preserve_quantize_registry as pqr,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as d8,
    )

    kind = type(layer).__name__
    if kind in ("BatchNormalization", "SyncBatchNormalization"):
        producer = _single_producer(layer)
        ok = (producer is not None and type(producer).__name__ in _BN_PRODUCERS
              and producer.name in annotated and _linear(producer)
              and _feeds_only(producer, model))
        return None if ok else (
            f"{kind}: standalone (not right after a linear Conv2D/DepthwiseConv2D/Dense it can "
            "be folded into); tfmot's 8-bit scheme has no config for it")
    if kind == "SeparableConv2D":
        return None if _linear(layer) else f"{kind}: fused activation is not supported by tfmot"
    if not d8.Default8BitQuantizeRegistry().supports(layer):
        return f"{kind}: not supported by tfmot's 8-bit QAT scheme"
    if isinstance(layer, keras.layers.Activation):
        name = _activation_name(layer.activation)
        if name not in _QAT_ACTIVATION_LAYER:
            return f"{kind}: activation {name!r} is not supported by tfmot's 8-bit scheme"
    elif hasattr(layer, "activation") and layer.trainable_weights:
        name = _activation_name(layer.activation)
        if name not in _QAT_LAYER_ACTIVATIONS:
            return f"{kind}: fused activation {name!r} is not supported by tfmot's 8-bit scheme"
    if prune_preserve and not pqr.Default8bitPrunePreserveQuantizeRegistry.supports(layer):
        return f"{kind}: not supported by tfmot's prune-preserving QAT scheme"
    return None


# -- flattening -----------------------------------------------------------------------------


def _fresh_layer(layer: keras.layers.Layer, name: str) -> keras.layers.Layer:
    config = layer.get_config()
    config["name"] = name
    try:
        return type(layer).from_config(config)
    except Exception as e:  # from_config of custom layers can raise anything
        raise InputError(
            f"layer {layer.name!r} ({type(layer).__name__}) cannot be rebuilt from its config "
            f"to flatten the nested model: {e}; implement get_config() for it"
        ) from e


def _accepts_training(layer: keras.layers.Layer) -> bool:
    try:
        return "training" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False


class _Flattener:
    """Rebuilds a model with every nested graph model inlined, reusing one new layer per layer."""

    def __init__(self, root: keras.Model) -> None:
        self.root = root
        self.new: dict[int, keras.layers.Layer] = {}
        self.pairs: list[tuple[keras.layers.Layer, keras.layers.Layer]] = []
        self.taken: set[str] = set()

    def _unique(self, name: str, prefix: str) -> str:
        candidate = name if name not in self.taken else f"{prefix}_{name}"
        k = 1
        while candidate in self.taken:
            candidate, k = f"{prefix}_{name}_{k}", k + 1
        self.taken.add(candidate)
        return candidate

    def layer_for(self, layer: keras.layers.Layer, prefix: str) -> keras.layers.Layer:
        if id(layer) not in self.new:
            fresh = _fresh_layer(layer, self._unique(layer.name, prefix))
            self.new[id(layer)] = fresh
            self.pairs.append((layer, fresh))
        return self.new[id(layer)]

    def run(self, model: keras.Model, inputs: list[Any], prefix: str,
            training: Any = None) -> list[Any]:
        """Calls ``model``'s layers on ``inputs`` in graph order; returns its output tensors."""
        if not is_graph_model(model):
            raise InputError(
                f"nested model {model.name!r} is a subclassed Keras model; it cannot be "
                "flattened for pruning/QAT (rebuild it with the functional API)"
            )
        tensors: dict[int, Any] = {id(t): new for t, new in zip(model.inputs, inputs, strict=True)}
        by_depth = model._nodes_by_depth  # tf_keras keeps the graph only here
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                layer = node.outbound_layer
                if node.is_input or isinstance(layer, keras.layers.InputLayer):
                    continue
                if not all(id(t) in tensors for t in node.keras_inputs):
                    continue  # a node of another graph that shares this layer
                args, kwargs = tf.nest.map_structure(
                    lambda x: tensors.get(id(x), x),
                    (tuple(node.call_args), dict(node.call_kwargs)),
                )
                if isinstance(layer, keras.Model):
                    flat_in = tf.nest.flatten(args[0] if args else kwargs.get("inputs"))
                    inner_training = kwargs.get("training", training)
                    outs: Any = self.run(layer, flat_in, layer.name, inner_training)
                    if len(outs) == 1:
                        outs = outs[0]
                else:
                    if training is not None and _accepts_training(layer):
                        kwargs.setdefault("training", training)
                    outs = self.layer_for(layer, prefix)(*args, **kwargs)
                for old, new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outs),
                                    strict=True):
                    tensors[id(old)] = new
        return [tensors[id(t)] for t in model.outputs]


def has_nested_model(model: keras.Model) -> bool:
    """Whether any layer of ``model`` is itself a Keras model."""
    return any(isinstance(layer, keras.Model) for layer in model.layers)


def flatten_model(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with every nested Functional/Sequential model inlined.

    Layers keep their names (a name that would clash is prefixed with its nested model's name)
    and their weights; a layer shared between calls stays shared. A nested model called with
    ``training=False`` (a frozen backbone) passes that on to its layers. Models without nested
    models are cloned as they are.

    Args:
        model: A Sequential or Functional tf_keras model.

    Returns:
        A new functional model (or a clone of a flat model) with the same weights.

    Raises:
        InputError: ``model`` or a nested model is subclassed, or a layer cannot be rebuilt.
    """
    if not is_graph_model(model):
        raise InputError(
            f"model {model.name!r} is a subclassed Keras model; rebuild it with the functional "
            "API (or as Sequential)"
        )
    if not has_nested_model(model):
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        return copy
    flattener = _Flattener(model)
    names = list(model.input_names)
    flattener.taken.update(names)
    inputs = [keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=name)
              for t, name in zip(model.inputs, names, strict=True)]
    # The outer model's own layers keep their names; an inner layer is prefixed on a clash.
    for layer in model.layers:
        if not isinstance(layer, (keras.Model, keras.layers.InputLayer)):
            flattener.layer_for(layer, model.name)
    outputs = flattener.run(model, inputs, model.name)
    flat = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)
    for old, new in flattener.pairs:
        new.set_weights(old.get_weights())
    return flat

