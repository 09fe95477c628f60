"""Channel importance criteria for channel pruning: one interface, scored per dependency group.

A criterion turns a :class:`~edgekit.compress.channel_graph.ChannelGroup` into one score per
channel (higher = more important). It sees the whole group: a channel of a residual group is
every producer's output slice, every BatchNormalization entry, every depthwise filter and every
consumer's input rows that the channel owns (the group's :class:`ParamRef` list), so a group is
judged as one unit, as Torch-Pruning's group importance does
(``torch_pruning/pruner/importance.py``).

Registered criteria (``ChannelPrune``'s ``importance:`` field; data-driven ones draw
``batches`` seeded training batches, and the count is in the stage's report):

==============  ====  =======================================================================
name            data  score of channel ``c`` (sums over every weight slice ``W_c`` it owns)
==============  ====  =======================================================================
``l1``          no    ``sum |W_c|`` (filter-norm pruning, Li et al. 2017)
``l2``          no    ``sqrt(sum W_c^2)``
``bn_gamma``    no    ``sum |gamma_c|`` of the group's BatchNormalizations (Network Slimming,
                      Liu et al. 2017); a group without one falls back to ``l1`` (reported)
``taylor``      yes   ``|mean_b sum g.W_c|``: first-order change of the loss when the channel
                      is zeroed (Molchanov et al. 2017)
``fisher``      yes   ``mean_b (sum g.W_c)^2``: squared first-order term per batch, the
                      Fisher-information estimate (Theis et al. 2018; Molchanov et al. 2019)
``snip``        yes   ``mean_b sum |g.W_c|``: connection sensitivity (Lee et al. 2019)
``hessian``     yes   ``sum 0.5 h.W_c^2`` with ``h`` the Hessian diagonal from Hutchinson's
                      estimator (Rademacher ``v``, ``v.(Hv)``), Optimal Brain Damage
``activation``  yes   mean ``|a_c|`` of the tensors the consumers read
``apoz``        yes   ``1 - APoZ``: share of non-positive activations (Hu et al. 2016)
==============  ====  =======================================================================

A **combination** is a mapping ``{l1: 0.5, taylor: 0.5}``: each criterion's scores are divided
by their mean over the group before they are weighted and added.

Adding a criterion: one function ``(context, group) -> np.ndarray`` registered with
:func:`criterion` in this module, plus a case in ``tests/edgekit/test_channel_importance.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device_bench.registry import Registry
from edgekit.compress.channel_graph import ChannelGraph, ChannelGroup, ParamRef
from edgekit.core._keras import keras, tf
from edgekit.core.errors import InputError

__all__ = ["CRITERIA", "Criterion", "ScoringContext", "criterion", "parse_importance",
           "score_groups"]

_KERNEL_WEIGHTS = ("kernel", "depthwise_kernel", "pointwise_kernel")


@dataclass(frozen=True)
class Criterion:
    """One registered importance criterion.

    Attributes:
        name: The name recipes use.
        score: ``(context, group) -> scores`` (one per channel, higher = keep).
        needs_data: Whether it reads training batches (gradients or activations).
        summary: One line for listings and the report.
    """

    name: str
    score: Callable[[ScoringContext, ChannelGroup], np.ndarray]
    needs_data: bool
    summary: str


CRITERIA: Registry[Criterion] = Registry("importance criterion", error=InputError)


def criterion(name: str, *, needs_data: bool, summary: str
              ) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Decorator that registers a scoring function under ``name``.

    Args:
        name: Recipe name.
        needs_data: Whether it reads training batches.
        summary: One line for the report.

    Returns:
        The decorator (the function is returned unchanged).
    """

    def decorate(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        CRITERIA.register(name, Criterion(name, fn, needs_data, summary))
        return fn

    return decorate


@dataclass
class ScoringContext:
    """What criteria read: the model, its weights and, lazily, statistics over a batch draw.

    Attributes:
        model: The (flat) model being pruned.
        graph: Its channel graph.
        x: The drawn training samples (empty for data-free criteria).
        y: Their labels.
        batch_size: Samples per batch of the draw.
        seed: Seed of the Hutchinson probes.
        notes: Facts a criterion wants in the report (a fallback it took).
    """

    model: keras.Model
    graph: ChannelGraph
    x: np.ndarray
    y: np.ndarray
    batch_size: int = 32
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict)

    # -- weights ---------------------------------------------------------------------------
    def weight(self, layer: str, name: str) -> np.ndarray:
        """The value of weight ``name`` of ``layer`` (numpy, cached)."""
        key = f"w:{layer}/{name}"
        if key not in self._cache:
            var = next(w for w in self.model.get_layer(layer).weights
                       if w.name.split("/")[-1].split(":")[0] == name)
            self._cache[key] = np.asarray(var.numpy(), np.float64)
        return self._cache[key]

    def batches(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The drawn samples as batches.

        Raises:
            InputError: No samples were drawn (a data-driven criterion without data).
        """
        if not len(self.x):
            raise InputError("this importance criterion needs training batches (batches >= 1)")
        return [(self.x[i:i + self.batch_size], self.y[i:i + self.batch_size])
                for i in range(0, len(self.x), self.batch_size)]

    # -- statistics over the draw (computed once for every group) --------------------------
    def _variables(self) -> list[tuple[str, str, Any]]:
        out = []
        for layer in self.model.layers:
            for var in layer.trainable_weights:
                out.append((layer.name, var.name.split("/")[-1].split(":")[0], var))
        return out

    def _loss(self, xb: np.ndarray, yb: np.ndarray) -> Any:
        logits = self.model(xb, training=False)
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            yb, logits, from_logits=True))

    def gradient_products(self) -> dict[str, list[np.ndarray]]:
        """``"layer/weight"`` -> per batch, ``g * W`` (gradient of the mean loss times weight)."""
        if "gw" not in self._cache:
            variables = self._variables()
            out: dict[str, list[np.ndarray]] = {f"{ln}/{n}": [] for ln, n, _ in variables}
            for xb, yb in self.batches():
                with tf.GradientTape() as tape:
                    loss = self._loss(xb, yb)
                grads = tape.gradient(loss, [v for _, _, v in variables])
                for (ln, n, v), g in zip(variables, grads, strict=True):
                    if g is not None:
                        out[f"{ln}/{n}"].append(np.asarray(g) * np.asarray(v.numpy()))
            self._cache["gw"] = out
        return self._cache["gw"]

    def hessian_diagonal(self) -> dict[str, np.ndarray]:
        """``"layer/weight"`` -> Hutchinson estimate of the loss Hessian's diagonal."""
        if "hd" not in self._cache:
            variables = self._variables()
            rng = np.random.default_rng(self.seed)
            sums = {f"{ln}/{n}": np.zeros(v.shape) for ln, n, v in variables}
            batches = self.batches()
            for xb, yb in batches:
                probes = [tf.constant(rng.choice([-1.0, 1.0], size=v.shape), v.dtype)
                          for _, _, v in variables]
                with tf.GradientTape() as outer:
                    with tf.GradientTape() as inner:
                        loss = self._loss(xb, yb)
                    grads = inner.gradient(loss, [v for _, _, v in variables])
                    dot = tf.add_n([tf.reduce_sum(g * p) for g, p in zip(grads, probes,
                                                                         strict=True)
                                    if g is not None])
                hv = outer.gradient(dot, [v for _, _, v in variables])
                for (ln, n, _), p, h in zip(variables, probes, hv, strict=True):
                    if h is not None:
                        sums[f"{ln}/{n}"] += np.asarray(p) * np.asarray(h)
            self._cache["hd"] = {k: v / len(batches) for k, v in sums.items()}
        return self._cache["hd"]

    def activations(self) -> dict[str, np.ndarray]:
        """Layer name -> per channel ``(mean |a|, share of a <= 0)`` of its output (2 x C)."""
        if "act" not in self._cache:
            names = sorted({p for g in self.graph.groups for p, _ in g.probes})
            probe = keras.Model(self.model.inputs,
                                [self.model.get_layer(n).output for n in names])
            sums: dict[str, np.ndarray] = {}
            rows: dict[str, int] = {}
            for xb, _ in self.batches():
                outs = probe(xb, training=False)
                outs = outs if isinstance(outs, (list, tuple)) else [outs]
                for n, out in zip(names, outs, strict=True):
                    a = np.asarray(out, np.float64).reshape(-1, out.shape[-1])
                    sums[n] = sums.get(n, 0) + np.stack([np.abs(a).sum(0), (a <= 0).sum(0)])
                    rows[n] = rows.get(n, 0) + a.shape[0]
            self._cache["act"] = {n: s / rows[n] for n, s in sums.items()}
        return self._cache["act"]


def per_channel(ref: ParamRef, value: np.ndarray, size: int,
                fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``sum fn(value[indices of c])`` for every channel ``c`` of a group of ``size``.

    Args:
        ref: Where the group's channels sit in ``value``.
        value: The weight (or a same-shaped statistic of it).
        size: Channels in the group.
        fn: Elementwise map applied before summing.

    Returns:
        One number per channel.
    """
    moved = np.moveaxis(value, ref.axis, 0)
    idx = np.asarray([ref.indices([c]) for c in range(size)])  # (C, width * repeat)
    return fn(moved[idx]).reshape(size, -1).sum(axis=1)


def _sum_refs(ctx: ScoringContext, group: ChannelGroup, weights: tuple[str, ...],
              fn: Callable[[np.ndarray], np.ndarray],
              source: Callable[[ParamRef], np.ndarray | None] | None = None) -> np.ndarray:
    total = np.zeros(group.size)
    for ref in group.refs:
        if ref.weight not in weights:
            continue
        value = ctx.weight(ref.layer, ref.weight) if source is None else source(ref)
        if value is not None:
            total += per_channel(ref, value, group.size, fn)
    return total


@criterion("l1", needs_data=False, summary="sum of |w| over every weight the channel owns")
def l1(ctx: ScoringContext, group: ChannelGroup) -> np.ndarray:
    """L1 magnitude of the group's kernels (producers' outputs, depthwise, consumers' inputs)."""
    return _sum_refs(ctx, group, _KERNEL_WEIGHTS, np.abs)


@criterion("l2", needs_data=False, summary="L2 norm of every weight the channel owns")
def l2(ctx: ScoringContext, group: ChannelGroup) -> np.ndarray:
    """L2 magnitude of the group's kernels."""
    return np.sqrt(_sum_refs(ctx, group, _KERNEL_WEIGHTS, np.square))


@criterion("bn_gamma", needs_data=False,
           summary="|gamma| of the group's BatchNormalization (Network Slimming)")
def bn_gamma(ctx: ScoringContext, group: ChannelGroup) -> np.ndarray:
    """Sum of ``|gamma|`` over the group's BatchNormalizations; L1 when it has none."""
    if not any(r.weight == "gamma" for r in group.refs):
        ctx.notes.append(f"bn_gamma: group {group.name!r} has no BatchNormalization, scored "
                         "by l1")
        return l1(ctx, group)
    return _sum_refs(ctx, group, ("gamma",), np.abs)


def _taylor_terms(ctx: ScoringContext, group: ChannelGroup) -> np.ndarray:
    """Per batch and channel, ``sum g.W`` over the channel's trainable weights (B x C)."""
    gw = ctx.gradient_products()
    rows = []
    for b in range(len(ctx.batches())):
        def source(ref: ParamRef, b: int = b) -> np.ndarray | None:
            series = gw.get(f"{ref.layer}/{ref.weight}")
            return series[b] if series else None
        rows.append(_sum_refs(ctx, group, _TRAINABLE, lambda v: v, source))
    return np.asarray(rows)


_TRAINABLE = ("kernel", "depthwise_kernel", "pointwise_kernel", "bias", "gamma", "beta")


@criterion("taylor", needs_data=True, summary="|first-order Taylor change of the loss|")
def taylor(ctx: ScoringContext, group: ChannelGroup) -> np.ndarray:
    """``|mean over batches of sum g.W|`` (Molchanov et al. 2017)."""
    return np.abs(_taylor_terms(ctx, group).mean(axis=0))


@criterion("fisher", needs_data=True, summary="mean squared first-order term (Fisher)")
def fisher(ctx: ScoringContext, group: ChannelGroup) -> np.ndarray:
    """``mean over batches of (sum g.W)^2`` (Theis et al. 2018, Molchanov et al. 2019)."""
    return np.square(_taylor_terms(ctx, group)).mean(axis=0)


@criterion("snip", needs_data=True, summary="sum of |g.w| (SNIP connection sensitivity)")
def snip(ctx: ScoringContext, group: ChannelGroup) -> np.ndarray:
    """``mean over batches of sum |g.W|`` (Lee et al. 2019)."""
    gw = ctx.gradient_products()
    batches = len(ctx.batches())
    total = np.zeros(group.size)
    for b in range(batches):
        def source(ref: ParamRef, b: int = b) -> np.ndarray | None:
            series = gw.get(f"{ref.layer}/{ref.weight}")
            return series[b] if series else None
        total += _sum_refs(ctx, group, _TRAINABLE, np.abs, source)
    return total / batches


@criterion("hessian", needs_data=True,
           summary="0.5 h w^2 with a Hutchinson Hessian diagonal (Optimal Brain Damage)")
def hessian(ctx: ScoringContext, group: ChannelGroup) -> np.ndarray:
    """OBD saliency ``sum 0.5 h.W^2`` with ``h`` from Hutchinson's estimator."""
    diag = ctx.hessian_diagonal()

    def source(ref: ParamRef) -> np.ndarray | None:
        h = diag.get(f"{ref.layer}/{ref.weight}")
        return None if h is None else 0.5 * h * np.square(ctx.weight(ref.layer, ref.weight))

    return np.abs(_sum_refs(ctx, group, _TRAINABLE, lambda v: v, source))


def _activation_stat(ctx: ScoringContext, group: ChannelGroup, row: int) -> np.ndarray:
    stats = ctx.activations()
    total = np.zeros(group.size)
    for layer, offset in group.probes:
        total += stats[layer][row][offset:offset + group.size]
    return total / max(1, len(group.probes))


@criterion("activation", needs_data=True, summary="mean |activation| the consumers read")
def activation(ctx: ScoringContext, group: ChannelGroup) -> np.ndarray:
    """Mean absolute activation of the group's channels where consumers read them."""
    return _activation_stat(ctx, group, 0)


@criterion("apoz", needs_data=True,
           summary="1 - average percentage of zeros of the activations (APoZ)")
def apoz(ctx: ScoringContext, group: ChannelGroup) -> np.ndarray:
    """``1 - APoZ``: a channel that is mostly zero after its ReLU scores low (Hu et al. 2016)."""
    return 1.0 - _activation_stat(ctx, group, 1)


def parse_importance(value: Any) -> dict[str, float]:
    """Reads ``importance:``: a criterion name or a ``{name: weight}`` combination.

    Args:
        value: ``"l1"`` or ``{"l1": 0.5, "taylor": 0.5}``.

    Returns:
        ``{name: weight}`` (one entry, weight 1, for a single name).

    Raises:
        InputError: An unknown criterion (the known ones are listed), a weight that is not a
            positive number, or an empty mapping.
    """
    if isinstance(value, str):
        CRITERIA.get(value)
        return {value: 1.0}
    if not isinstance(value, Mapping) or not value:
        raise InputError(f"importance must be a criterion name ({', '.join(CRITERIA.names())}) "
                         f"or a mapping {{name: weight}}, got {value!r}")
    out = {}
    for name, weight in value.items():
        CRITERIA.get(name)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise InputError(f"importance weight of {name!r} must be a number > 0, got "
                             f"{weight!r}")
        out[str(name)] = float(weight)
    return out


def needs_data(importance: Mapping[str, float]) -> bool:
    """Whether any criterion of the combination reads training batches."""
    return any(CRITERIA.get(n).needs_data for n in importance)


def score_groups(ctx: ScoringContext, groups: list[ChannelGroup],
                 importance: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Scores every channel of every group with one criterion or a weighted combination.

    Args:
        ctx: The scoring context.
        groups: The groups to score.
        importance: ``{criterion: weight}`` (see :func:`parse_importance`).

    Returns:
        Group name -> scores (float64, one per channel; finite, >= 0 for every built-in).
    """
    out = {}
    single = len(importance) == 1
    for group in groups:
        total = np.zeros(group.size)
        for name, weight in importance.items():
            s = np.nan_to_num(np.asarray(CRITERIA.get(name).score(ctx, group), np.float64))
            if not single:
                mean = float(np.mean(s))
                s = s / mean if mean > 0 else s
            total += weight * s
        out[group.name] = total
    return out
