"""Removing channels: rebuild a tf_keras model with chosen channels of its groups taken out.

Given the dependency groups of :mod:`edgekit.compress.channel_graph` and, per group, the channel
numbers to remove, :func:`remove_channels` rewrites the model's config (a producer's ``filters``
or ``units``, a Reshape's target shape, ``use_bias`` where a bias must now carry a folded
constant), rebuilds it and slices every weight the groups index: producers' output axis,
BatchNormalization's four vectors, depthwise filters, consumers' input axis (``Flatten`` rows
included). The result is a smaller **dense** model of built-in layers, so pruning, QAT and the
full-int8 converter treat it like any other.

**Folding.** A channel whose producers have an all-zero kernel slice is a constant map (its
bias, then BatchNormalization's ``beta - gamma * mean / sqrt(var + eps)``, then the activation:
``act(beta)``...). Its contribution to every consumer, ``sum(W[..., c, :]) * k_c``, is added to
that consumer's bias, so removing such a channel changes no output. The constants are found by
running each channel-preserving layer on a constant input and reading the centre of its output.
The fold is exact where the consumer sees no zero padding of the constant map (1x1 and 'valid'
convolutions, Dense, pooled maps); a 'same'-padded kernel at the border of the map sees the
padding's zeros instead of ``k_c``, so there the fold is exact only when ``k_c`` is 0 (as it is
after :func:`mask_channels`, which zeroes every weight the removed channels own).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgekit.compress.channel_graph import ChannelGraph, ParamRef
from edgekit.core._keras import keras, tf
from edgekit.core.errors import InputError

__all__ = ["check_removal", "mask_channels", "remove_channels"]

_KERNELS = ("kernel", "pointwise_kernel")
_ZERO_ON_MASK = ("kernel", "pointwise_kernel", "depthwise_kernel", "bias", "gamma", "beta")


def _short(weight: Any) -> str:
    return weight.name.split("/")[-1].split(":")[0]


def check_removal(graph: ChannelGraph, removed: Mapping[str, Sequence[int]]
                  ) -> dict[str, list[int]]:
    """Validates a removal plan: known, prunable groups; channel numbers in range; one kept.

    Args:
        graph: The model's channel graph.
        removed: Group name -> channel numbers to remove.

    Returns:
        Group name -> sorted unique channel numbers (empty entries dropped).

    Raises:
        InputError: An unknown or refused group, a channel out of range, or every channel of a
            group removed.
    """
    out: dict[str, list[int]] = {}
    for name, channels in removed.items():
        group = graph.group(name)
        chosen = sorted({int(c) for c in channels})
        if not chosen:
            continue
        if not group.prunable:
            raise InputError(f"channel group {name!r} cannot be cut: "
                             f"{'; '.join(group.refused) or 'it has no producer'}")
        if chosen[0] < 0 or chosen[-1] >= group.size:
            raise InputError(f"channel group {name!r} has channels 0..{group.size - 1}, got "
                             f"{chosen[0] if chosen[0] < 0 else chosen[-1]}")
        if len(chosen) >= group.size:
            raise InputError(f"removing all {group.size} channels of group {name!r} would empty "
                             "it; keep at least one")
        out[name] = chosen
    return out


def _removed_indices(graph: ChannelGraph, plan: Mapping[str, list[int]]
                     ) -> dict[tuple[str, str, int], set[int]]:
    """(layer, weight, axis) -> indices to drop, over every ref of every cut group."""
    drop: dict[tuple[str, str, int], set[int]] = {}
    for name, channels in plan.items():
        for ref in graph.group(name).refs:
            drop.setdefault((ref.layer, ref.weight, ref.axis), set()).update(ref.indices(channels))
    return drop


def mask_channels(model: keras.Model, graph: ChannelGraph,
                  removed: Mapping[str, Sequence[int]]) -> keras.Model:
    """A copy of ``model`` with every weight the given channels own set to zero.

    The producers' kernel slices and biases, BatchNormalization's gamma and beta, depthwise
    filters: after this the channels are zero maps (for activations with ``act(0) = 0``) and
    :func:`remove_channels` of the same plan gives the same outputs.

    Args:
        model: The model the graph was built from.
        graph: Its channel graph.
        removed: Group name -> channel numbers.

    Returns:
        The masked copy (same architecture).

    Raises:
        InputError: A bad plan (see :func:`check_removal`).
    """
    plan = check_removal(graph, removed)
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    for name, channels in plan.items():
        for ref in graph.group(name).refs:
            if ref.role == "in" or ref.weight not in _ZERO_ON_MASK:
                continue
            var = next(w for w in masked.get_layer(ref.layer).weights if _short(w) == ref.weight)
            value = np.array(var.numpy())
            index: list[Any] = [slice(None)] * value.ndim
            index[ref.axis] = ref.indices(channels)
            value[tuple(index)] = 0.0
            var.assign(value)
    return masked


def _nodes(model: keras.Model) -> list[Any]:
    return [node for depth in sorted(model._nodes_by_depth, reverse=True)
            for node in model._nodes_by_depth[depth]]


def _zero_channels(layer: Any) -> np.ndarray | None:
    """Output channels of a producer whose kernel slice is all zero (bool mask), or None."""
    for w in layer.weights:
        if _short(w) in _KERNELS:
            k = np.asarray(w.numpy())
            return np.all(k.reshape(-1, k.shape[-1]) == 0.0, axis=0)
    return None


def _constant_input(tensor: Any, values: np.ndarray) -> Any:
    shape = [1] + [8 if d is None else int(d) for d in tensor.shape[1:]]
    if shape[-1] != len(values) and shape[-1] % len(values) == 0:  # a flattened layout
        values = np.tile(values, shape[-1] // len(values))
    return tf.constant(np.broadcast_to(np.nan_to_num(values, nan=0.0), shape), tf.float32)


def _centre(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    index = tuple(d // 2 for d in arr.shape[:-1])
    return arr[index]


def _channel_constants(model: keras.Model, graph: ChannelGraph) -> dict[int, np.ndarray]:
    """id(tensor) -> the value of each channel where it is a constant map (NaN: not constant)."""
    consts: dict[int, np.ndarray] = {}
    producers = {p for g in graph.groups for p in g.producers}
    for node in _nodes(model):
        layer = node.outbound_layer
        outputs = tf.nest.flatten(node.outputs)
        if len(outputs) != 1 or isinstance(layer, keras.layers.InputLayer) or node.is_input:
            for t in outputs:
                consts[id(t)] = np.full(int(t.shape[-1]), np.nan)
            continue
        out = outputs[0]
        channels = int(out.shape[-1])
        inputs = list(node.keras_inputs)
        if layer.name in producers:
            zero = _zero_channels(layer)
            value = np.full(channels, np.nan)
            if zero is not None and zero.any():
                bias = next((np.asarray(w.numpy()) for w in layer.weights if _short(w) == "bias"),
                            np.zeros(channels, np.float32))
                act = np.asarray(layer.activation(tf.constant(bias, tf.float32)))
                value[zero] = act[zero]
            consts[id(out)] = value
            continue
        known = [consts.get(id(t)) for t in inputs]
        if graph.layer_types.get(layer.name) == "Flatten" and known[0] is not None:
            consts[id(out)] = known[0].copy()  # over one repeat of the layout, as refs count
            continue
        if graph.layer_types.get(layer.name) in ("Flatten", "Reshape") or \
                layer.name not in graph.layouts or any(k is None for k in known) or \
                all(np.isnan(k).all() for k in known):
            same = len(known) == 1 and known[0] is not None and len(known[0]) == channels
            consts[id(out)] = known[0].copy() if same else np.full(channels, np.nan)
            continue
        if graph.layer_types.get(layer.name) == "Concatenate" and \
                layer.axis % out.shape.rank == out.shape.rank - 1:
            consts[id(out)] = np.concatenate(known)
            continue
        feed = {id(t): _constant_input(t, k) for t, k in zip(inputs, known, strict=True)}
        args, kwargs = tf.nest.map_structure(lambda x, feed=feed: feed.get(id(x), x),
                                             (tuple(node.call_args), dict(node.call_kwargs)))
        if "training" in layer._call_spec.arg_names:
            kwargs["training"] = False
        try:
            value = _centre(layer(*args, **kwargs)).astype(np.float64)
        except Exception:  # a layer that cannot run on a batch of one: no constants through it
            value = np.full(channels, np.nan)
        if value.shape != (channels,):
            value = np.full(channels, np.nan)
        for k in known:  # a channel is constant only where every input's channel is
            if len(k) in (1, channels):
                value[np.isnan(np.broadcast_to(k, channels))] = np.nan
        consts[id(out)] = value
    return consts


def _fold(layer: Any, node: Any, refs: list[tuple[ParamRef, list[int]]],
          consts: dict[int, np.ndarray]) -> np.ndarray | None:
    """What the removed constant channels added to ``layer``'s pre-activation output."""
    inputs = list(node.keras_inputs)
    k = consts.get(id(inputs[0]))
    if k is None:
        return None
    weights = {_short(w): np.asarray(w.numpy(), np.float64) for w in layer.weights}
    delta: np.ndarray | None = None
    for ref, channels in refs:
        constant = [c for c in channels if np.isfinite(k[ref.offset + c])]
        if not constant:
            continue
        values = np.asarray([k[ref.offset + c] for c in constant])
        if ref.weight == "kernel":
            pairs = sorted((i, v) for c, v in zip(constant, values, strict=True)
                           for i in ref.indices([c]))
            taken = np.take(weights["kernel"], [i for i, _ in pairs], axis=-2)
            v = np.asarray([v for _, v in pairs])[:, None]
            part = (taken * v).reshape(-1, taken.shape[-1]).sum(axis=0)
        elif ref.weight == "pointwise_kernel":
            dw = weights["depthwise_kernel"]  # [.., C, m]
            pw = weights["pointwise_kernel"]  # [.., C*m, out]
            m = ref.width
            part = np.zeros(pw.shape[-1])
            for c, v in zip(constant, values, strict=True):
                col = ref.offset + c
                taps = dw[..., col, :].reshape(-1, m).sum(axis=0)
                part += v * np.einsum("j,jo->o", taps,
                                      pw.reshape(-1, pw.shape[-1])[col * m:(col + 1) * m])
        else:
            continue
        delta = part if delta is None else delta + part
    return delta


def remove_channels(model: keras.Model, graph: ChannelGraph,
                    removed: Mapping[str, Sequence[int]]) -> tuple[keras.Model, dict[str, Any]]:
    """Rebuilds ``model`` without the given channels, folding constant ones into biases.

    Args:
        model: A flat Sequential or Functional tf_keras model (the one ``graph`` describes).
        graph: Its channel graph (:func:`edgekit.compress.channel_graph.build_channel_graph`).
        removed: Group name -> channel numbers to remove.

    Returns:
        ``(new model, report)``; the report has ``groups`` (name -> ``{before, after}``
        channel counts) and ``folded`` (layers whose bias took constant channels).

    Raises:
        InputError: A bad plan (see :func:`check_removal`), or a layer that cannot be rebuilt.
    """
    plan = check_removal(graph, removed)
    drop = _removed_indices(graph, plan)
    groups = {name: graph.group(name) for name in plan}
    # Where every cut group's channels are consumed, with the removed channel numbers.
    consumed: dict[str, list[tuple[ParamRef, list[int]]]] = {}
    for name, channels in plan.items():
        for ref in groups[name].refs:
            if ref.role == "in" and ref.weight in _KERNELS:
                consumed.setdefault(ref.layer, []).append((ref, channels))
    folds: dict[str, np.ndarray] = {}
    zero = {p: _zero_channels(model.get_layer(p)) for g in groups.values() for p in g.producers}
    if any(zero[p] is not None and zero[p][channels].any()
           for name, channels in plan.items() for p in groups[name].producers):
        consts = _channel_constants(model, graph)
        for node in _nodes(model):
            layer = node.outbound_layer
            if layer.name in consumed:
                delta = _fold(layer, node, consumed[layer.name], consts)
                if delta is not None and np.any(delta != 0.0):
                    folds[layer.name] = delta
    config = copy.deepcopy(model.get_config())
    entries = {e["config"]["name"]: e for e in config["layers"]}
    for name, channels in plan.items():
        group = groups[name]
        kept = group.size - len(channels)
        for producer in group.producers:
            cfg = entries[producer]["config"]
            cfg["units" if "units" in cfg else "filters"] = kept
    for layer_name in {r for g in groups.values() for r in g.reshapes}:
        cfg = entries[layer_name]["config"]
        channels = graph.layouts[layer_name].channels - sum(
            len(plan[n]) * sum(1 for sid, _ in graph.layouts[layer_name].segments
                               if sid == groups[n].id) for n in plan)
        cfg["target_shape"] = [*list(cfg["target_shape"])[:-1], channels]
    for layer_name in folds:
        entries[layer_name]["config"]["use_bias"] = True
    try:
        cls = keras.Sequential if isinstance(model, keras.Sequential) else keras.Model
        new = cls.from_config(config)
    except Exception as e:  # a custom layer whose from_config fails can raise anything
        raise InputError(f"model {model.name!r} cannot be rebuilt from its config after the "
                         f"cut: {e}") from e
    for layer in new.layers:
        if not layer.weights:
            continue
        old = {_short(w): np.asarray(w.numpy()) for w in model.get_layer(layer.name).weights}
        if layer.name in folds:  # the fold is over the consumer's outputs before its own cut
            delta = folds[layer.name]
            if "bias" not in old:  # a bias made for the fold: cut like the kernel's outputs
                old["bias"] = np.zeros(delta.shape, np.float32)
                for kernel in _KERNELS:
                    if (layer.name, kernel, -1) in drop:
                        drop[(layer.name, "bias", 0)] = drop[(layer.name, kernel, -1)]
            old["bias"] = (old["bias"] + delta).astype(np.float32)
        values = []
        for w in layer.weights:
            value = old[_short(w)]
            for (lname, weight, axis), indices in drop.items():
                if lname == layer.name and weight == _short(w):
                    value = np.delete(value, sorted(indices), axis=axis)
            values.append(value)
        layer.set_weights(values)
    report = {"groups": {n: {"before": groups[n].size, "after": groups[n].size - len(c)}
                         for n, c in plan.items()},
              "folded": sorted(folds)}
    return new, report
