"""Which channels of a Keras model must be removed together: the channel dependency graph.

Removing output channel ``c`` of a Conv2D is only half of a cut: the BatchNormalization after it
loses entry ``c`` of its four vectors, the DepthwiseConv2D after that loses filter ``c`` (depthwise
ties input and output channels), the next Conv2D or Dense loses input row ``c``, and when the
tensor meets another branch in an ``Add`` the other branch's producer must lose the same channel.
Torch-Pruning (VainF/Torch-Pruning, ``torch_pruning/dependency/``, "DepGraph", arXiv 2301.12900)
models this for PyTorch as a graph of coupled pruning operations; this module does the same job
for tf_keras Functional and Sequential models in a form suited to Keras' layer graph:

* every tensor carries a **layout**: which *channel spaces* its last (channel) axis is made of, as
  segments, and how often the layout repeats after a ``Flatten`` (``[H, W, C]`` flattened is the
  layout repeated ``H*W`` times, with stride ``C``);
* a producer (Conv, Dense, SeparableConv) opens a new space; channel-preserving layers (BN,
  depthwise, activations, pooling, padding, dropout, Reshape on the other axes) pass the layout
  on; ``Concatenate`` on the channel axis joins layouts as segments; ``Add``/``Subtract``/
  ``Multiply``/``Maximum``/``Minimum``/``Average`` (and ``Concatenate`` on another axis) unite
  the spaces of their inputs: one **dependency group** (a union-find);
* every weight indexed by a space's channels is recorded as a :class:`ParamRef` (layer, weight,
  axis, where in that axis): a group's channel ``c`` is exactly the set of slices its refs
  name. Importance criteria gather those slices; surgery removes them.

What cannot be kept consistent is **refused** for its group, with the reason: the model's input
and output channels, a layer the rules do not know (``Lambda``, custom layers, a ``Reshape`` that
moves the channel axis, softmax over channels...), grouped convolutions, a depthwise multiplier
above 1, a layer called more than once, a size-1 tensor broadcast over the channels. A refused
group is left dense; the rest of the model is still cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgekit.core._keras import keras
from edgekit.core.errors import InputError

__all__ = ["ChannelGraph", "ChannelGroup", "Layout", "ParamRef", "build_channel_graph",
           "select_groups"]

# Producers: a new channel space on the output's last axis.
_CONV = ("Conv1D", "Conv2D", "Conv3D")
_SEPARABLE = ("SeparableConv1D", "SeparableConv2D")
_DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D")
# Single-input layers that keep the channel axis as it is (no weights on it).
_PASS_THROUGH = frozenset({
    "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D", "Identity", "ActivityRegularization",
})
_MERGE = frozenset({"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average"})
# TFOpLambda functions (x + 3, x * (1/6) in MobileNetV3's hard-swish) that act per element.
_ELEMENTWISE_OPS = frozenset({
    "__operators__.add", "math.add", "math.subtract", "math.multiply", "math.truediv",
    "math.divide", "nn.relu", "nn.relu6", "math.sigmoid", "nn.silu", "math.maximum",
    "math.minimum", "math.tanh", "nn.swish",
})
# Activation names that act on each element alone (softmax mixes the channels).
_CHANNEL_MIXING_ACTIVATIONS = frozenset({"softmax", "log_softmax"})


@dataclass(frozen=True)
class Layout:
    """What a tensor's channel axis is made of.

    Attributes:
        segments: ``(space id, channels)`` in axis order (Concatenate makes several).
        repeat: How many times the layout repeats along the axis (``H*W`` after Flatten).
    """

    segments: tuple[tuple[int, int], ...]
    repeat: int = 1

    @property
    def channels(self) -> int:
        """Channels of one repeat (the sum of the segments)."""
        return sum(n for _, n in self.segments)


@dataclass(frozen=True)
class ParamRef:
    """Where a group's channels sit in one weight of one layer.

    Channel ``c`` of the group owns the indices ``(offset + c) * width + j + s * stride`` for
    ``j < width`` and ``s < repeat`` along ``axis`` of weight ``weight`` of layer ``layer``.

    Attributes:
        layer: Layer name.
        weight: Weight's short name (``kernel``, ``bias``, ``gamma``, ``depthwise_kernel``...).
        axis: Axis of the weight (negative counts from the end).
        role: ``out`` (a producer's output channel), ``channelwise`` (BN, depthwise: input and
            output are the same channel) or ``in`` (a consumer reads the channel).
        offset: Position of the group's first channel in that axis' layout.
        width: Consecutive entries per channel (a depthwise multiplier; 1 otherwise).
        repeat: Repeats of the layout (after Flatten; 1 otherwise).
        stride: Distance between repeats (the channels of one repeat times ``width``).
    """

    layer: str
    weight: str
    axis: int
    role: str
    offset: int = 0
    width: int = 1
    repeat: int = 1
    stride: int = 0

    def indices(self, channels: Any) -> list[int]:
        """Indices along ``axis`` owned by the given channels of the group (sorted).

        Args:
            channels: Channel numbers inside the group.

        Returns:
            The sorted indices.
        """
        return sorted((self.offset + int(c)) * self.width + j + s * self.stride
                      for c in channels for j in range(self.width) for s in range(self.repeat))


@dataclass
class ChannelGroup:
    """Channels that can only be removed together (one index space).

    Attributes:
        id: Stable id (the root space).
        name: The first producer's layer name (``conv1``, or ``conv1+2`` for a merged group).
        size: Channels in the group.
        refs: Every weight slice indexed by the group's channels.
        producers: Layers whose output channels the group is.
        consumers: Layers that read the group's channels (input rows / kernel input axis).
        reshapes: Reshape layers whose target shape holds the group's channels.
        probes: ``(layer, offset)``: outputs of these layers carry the group's channels at
            ``offset`` (the tensors consumers read), for activation-based criteria.
        refused: Why the group cannot be cut (empty: it can).
    """

    id: int
    name: str
    size: int
    refs: list[ParamRef] = field(default_factory=list)
    producers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    reshapes: list[str] = field(default_factory=list)
    probes: list[tuple[str, int]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def prunable(self) -> bool:
        """Whether the group can be cut (no refusal and at least one producer)."""
        return not self.refused and bool(self.producers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: name, size, producers, consumers, refused reasons."""
        return {"name": self.name, "size": self.size, "producers": list(self.producers),
                "consumers": list(self.consumers), "refused": list(self.refused)}


@dataclass
class ChannelGraph:
    """The dependency groups of one model and the layout of every layer's output.

    Attributes:
        groups: Groups in the order their first producer appears in the graph.
        layouts: Layer name -> layout of its (single) output.
        layer_types: Layer name -> class name.
    """

    groups: list[ChannelGroup]
    layouts: dict[str, Layout]
    layer_types: dict[str, str]

    def prunable(self) -> list[ChannelGroup]:
        """The groups that can be cut."""
        return [g for g in self.groups if g.prunable]

    def refused(self) -> list[ChannelGroup]:
        """The groups with producers that cannot be cut (each with its reasons)."""
        return [g for g in self.groups if g.refused and g.producers]

    def group(self, name: str) -> ChannelGroup:
        """The group named ``name``.

        Raises:
            InputError: No such group (the known names are listed).
        """
        for g in self.groups:
            if g.name == name:
                return g
        raise InputError(f"no channel group {name!r}; groups: "
                         f"{', '.join(g.name for g in self.groups if g.producers)}")


class _Spaces:
    """Union-find over channel spaces, with sizes, refs and refusal reasons per root."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.refs: dict[int, list[ParamRef]] = {}
        self.producers: dict[int, list[str]] = {}
        self.consumers: dict[int, list[str]] = {}
        self.reshapes: dict[int, list[str]] = {}
        self.probes: dict[int, list[tuple[str, int]]] = {}
        self.refused: dict[int, list[str]] = {}

    def new(self, size: int, refused: str | None = None) -> int:
        sid = len(self.parent)
        self.parent.append(sid)
        self.size.append(size)
        for table in (self.refs, self.producers, self.consumers, self.reshapes, self.probes,
                      self.refused):
            table[sid] = []
        if refused:
            self.refused[sid].append(refused)
        return sid

    def find(self, sid: int) -> int:
        while self.parent[sid] != sid:
            self.parent[sid] = self.parent[self.parent[sid]]
            sid = self.parent[sid]
        return sid

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        root, other = min(ra, rb), max(ra, rb)  # the older space names the group
        self.parent[other] = root
        for table in (self.refs, self.producers, self.consumers, self.reshapes, self.probes,
                      self.refused):
            table[root].extend(table.pop(other))
        return root

    def refuse(self, sid: int, reason: str) -> None:
        root = self.find(sid)
        if reason not in self.refused[root]:
            self.refused[root].append(reason)

    def add(self, table: dict[int, list[Any]], sid: int, item: Any) -> None:
        table[self.find(sid)].append(item)


def _type(layer: Any) -> str:
    return type(layer).__name__


def _activation_name(layer: Any) -> str:
    fn = getattr(layer, "activation", None)
    return getattr(fn, "__name__", "") if fn is not None else ""


def _weight_names(layer: Any) -> set[str]:
    return {w.name.split("/")[-1].split(":")[0] for w in layer.weights}


class _Builder:
    """Walks the layer graph once, in topological order, filling :class:`_Spaces`."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.spaces = _Spaces()
        self.layout: dict[int, Layout] = {}  # id(KerasTensor) -> layout
        self.layer_layout: dict[str, Layout] = {}
        self.first_producer: dict[int, str] = {}  # space id -> name of the layer that opened it

    # -- layouts --------------------------------------------------------------------------
    def fresh(self, tensor: Any, owner: str, refused: str | None = None) -> Layout:
        """A new single-segment layout for ``tensor`` (its last axis)."""
        channels = int(tensor.shape[-1]) if tensor.shape.rank else 1
        sid = self.spaces.new(channels, refused)
        self.first_producer[sid] = owner
        return Layout(((sid, channels),))

    def refuse_layout(self, layout: Layout, reason: str) -> None:
        for sid, _ in layout.segments:
            self.spaces.refuse(sid, reason)

    def refuse_node(self, layer: Any, inputs: list[Any], outputs: list[Any], reason: str) -> None:
        """Refuses every space that enters ``layer`` and opens refused spaces for its outputs."""
        for t in inputs:
            self.refuse_layout(self.layout[id(t)], f"{layer.name}: {reason}")
        opens = bool(_weight_names(layer) & {"kernel", "pointwise_kernel"})
        for t in outputs:
            layout = self.fresh(t, layer.name, f"{layer.name}: {reason}")
            self.set(layer, t, layout)
            if opens:  # a layer with a kernel that made these channels: name it in the report
                self.spaces.add(self.spaces.producers, layout.segments[0][0], layer.name)

    def set(self, layer: Any, tensor: Any, layout: Layout) -> None:
        self.layout[id(tensor)] = layout
        self.layer_layout[layer.name] = layout

    # -- refs -----------------------------------------------------------------------------
    def ref(self, layout: Layout, layer: Any, weight: str, axis: int, role: str,
            width: int = 1) -> None:
        """Records ``weight``'s ``axis`` as indexed by every segment of ``layout``."""
        if weight not in _weight_names(layer):
            return
        offset = 0
        for sid, n in layout.segments:
            self.spaces.add(self.spaces.refs, sid, ParamRef(
                layer.name, weight, axis, role, offset=offset, width=width,
                repeat=layout.repeat, stride=layout.channels * width))
            offset += n

    def consume(self, layer: Any, tensor: Any, node: Any, weights: tuple[tuple[str, int], ...]
                ) -> None:
        """``layer`` reads ``tensor``'s channels through the given ``(weight, width)``."""
        layout = self.layout[id(tensor)]
        for weight, width in weights:
            self.ref(layout, layer, weight, -2, "in", width)
        source = tensor._keras_history.layer
        if _type(source) == "Flatten":  # read the channels where they are still an axis
            source = source._inbound_nodes[0].inbound_layers
        offset = 0
        for sid, n in layout.segments:
            self.spaces.add(self.spaces.consumers, sid, layer.name)
            self.spaces.add(self.spaces.probes, sid, (source.name, offset))
            offset += n

    # -- the walk -------------------------------------------------------------------------
    def run(self) -> ChannelGraph:
        model = self.model
        nodes = [node for depth in sorted(model._nodes_by_depth, reverse=True)
                 for node in model._nodes_by_depth[depth]]
        calls: dict[str, int] = {}
        for node in nodes:
            calls[node.outbound_layer.name] = calls.get(node.outbound_layer.name, 0) + 1
        for node in nodes:
            layer = node.outbound_layer
            outputs = list(node.outputs) if isinstance(node.outputs, (list, tuple)) \
                else [node.outputs]
            inputs = list(node.keras_inputs)
            if isinstance(layer, keras.layers.InputLayer) or node.is_input:
                for t in outputs:
                    self.set(layer, t, self.fresh(t, layer.name, "the model's input channels"))
                continue
            if isinstance(layer, keras.Model):
                raise InputError(f"layer {layer.name!r} is a nested model; flatten the model "
                                 "first (edgekit.compress.layer_support.flatten_model)")
            if calls[layer.name] > 1:
                self.refuse_node(layer, inputs, outputs,
                                 f"layer is called {calls[layer.name]} times (shared weights)")
                continue
            self.visit(layer, node, inputs, outputs)
        for t in model.outputs:
            self.refuse_layout(self.layout[id(t)], "the model's output channels")
        return self.graph()

    def visit(self, layer: Any, node: Any, inputs: list[Any], outputs: list[Any]) -> None:
        kind = _type(layer)
        out = outputs[0]
        if len(outputs) != 1:
            self.refuse_node(layer, inputs, outputs, f"{kind} has {len(outputs)} outputs")
        elif getattr(layer, "data_format", None) == "channels_first":
            self.refuse_node(layer, inputs, outputs, "channels_first data format")
        elif kind in _CONV or kind == "Dense" or kind in _SEPARABLE:
            self.producer(layer, kind, node, inputs[0], out)
        elif kind in _DEPTHWISE:
            self.depthwise(layer, inputs[0], out)
        elif kind == "BatchNormalization":
            self.batch_norm(layer, inputs[0], out)
        elif kind in _PASS_THROUGH or (kind == "Activation" and _activation_name(layer)
                                       not in _CHANNEL_MIXING_ACTIVATIONS):
            self.pass_through(layer, inputs, out)
        elif kind in ("Activation", "Softmax"):
            self.refuse_node(layer, inputs, outputs, "softmax mixes the channels")
        elif kind == "Rescaling":
            scalar = all(isinstance(layer.get_config()[k], (int, float))
                         for k in ("scale", "offset"))
            self.pass_through(layer, inputs, out, None if scalar else
                              "Rescaling with a per-channel scale or offset")
        elif kind == "Flatten":
            self.flatten(layer, inputs[0], out)
        elif kind == "Reshape":
            self.reshape(layer, inputs[0], out)
        elif kind in _MERGE or (kind == "TFOpLambda"
                                and layer.get_config().get("function") in _ELEMENTWISE_OPS):
            self.merge(layer, inputs, out)
        elif kind == "Concatenate":
            self.concatenate(layer, inputs, out)
        else:
            self.refuse_node(layer, inputs, outputs,
                             f"{kind} layer: how its output channels depend on its input "
                             "channels is not known")

    def producer(self, layer: Any, kind: str, node: Any, tensor: Any, out: Any) -> None:
        groups = getattr(layer, "groups", 1)
        if kind in _CONV and groups != 1:
            self.refuse_node(layer, [tensor], [out], f"grouped convolution (groups={groups})")
            return
        if self.layout[id(tensor)].repeat > 1 and kind != "Dense":
            self.refuse_node(layer, [tensor], [out], f"{kind} on a flattened tensor")
            return
        if kind in _SEPARABLE:
            width = int(layer.depth_multiplier)
            self.consume(layer, tensor, node, (("depthwise_kernel", 1),
                                               ("pointwise_kernel", width)))
            kernel = "pointwise_kernel"
        else:
            self.consume(layer, tensor, node, (("kernel", 1),))
            kernel = "kernel"
        layout = self.fresh(out, layer.name)
        self.set(layer, out, layout)
        sid = layout.segments[0][0]
        self.spaces.add(self.spaces.producers, sid, layer.name)
        self.ref(layout, layer, kernel, -1, "out")
        self.ref(layout, layer, "bias", 0, "out")

    def depthwise(self, layer: Any, tensor: Any, out: Any) -> None:
        if int(layer.depth_multiplier) != 1:
            self.refuse_node(layer, [tensor], [out],
                             f"depth_multiplier={layer.depth_multiplier} (only 1 ties channels "
                             "one to one)")
            return
        layout = self.layout[id(tensor)]
        if layout.repeat > 1:
            self.refuse_node(layer, [tensor], [out], "depthwise on a flattened tensor")
            return
        self.ref(layout, layer, "depthwise_kernel", -2, "channelwise")
        self.ref(layout, layer, "bias", 0, "channelwise")
        self.set(layer, out, layout)

    def batch_norm(self, layer: Any, tensor: Any, out: Any) -> None:
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        rank = tensor.shape.rank
        layout = self.layout[id(tensor)]
        if [a % rank for a in axis] != [rank - 1] or layout.repeat > 1:
            self.refuse_node(layer, [tensor], [out], f"BatchNormalization over axis {axis}")
            return
        for weight in ("gamma", "beta", "moving_mean", "moving_variance"):
            self.ref(layout, layer, weight, 0, "channelwise")
        self.set(layer, out, layout)

    def pass_through(self, layer: Any, inputs: list[Any], out: Any,
                     refuse: str | None = None) -> None:
        tensor = inputs[0]
        same = tensor.shape.rank and out.shape.rank and tensor.shape[-1] == out.shape[-1]
        if refuse or len(inputs) != 1 or not same:
            self.refuse_node(layer, inputs, [out], refuse or f"{_type(layer)} changes the "
                             "channel axis")
            return
        self.set(layer, out, self.layout[id(tensor)])

    def flatten(self, layer: Any, tensor: Any, out: Any) -> None:
        layout = self.layout[id(tensor)]
        rank = tensor.shape.rank
        if rank <= 2:
            self.set(layer, out, layout)
            return
        spatial = tensor.shape[1:-1]
        if any(d is None for d in spatial) or layer.data_format == "channels_first":
            self.refuse_node(layer, [tensor], [out], "Flatten of an unknown or channels-first "
                             "shape")
            return
        repeat = 1
        for d in spatial:
            repeat *= int(d)
        self.set(layer, out, Layout(layout.segments, layout.repeat * repeat))

    def reshape(self, layer: Any, tensor: Any, out: Any) -> None:
        layout = self.layout[id(tensor)]
        target = tuple(layer.target_shape)
        if layout.repeat > 1 or not target or target[-1] != tensor.shape[-1]:
            self.refuse_node(layer, [tensor], [out], f"Reshape to {target} moves the channel axis")
            return
        for sid, _ in layout.segments:
            self.spaces.add(self.spaces.reshapes, sid, layer.name)
        self.set(layer, out, layout)

    def merge(self, layer: Any, inputs: list[Any], out: Any) -> None:
        full = [t for t in inputs if t.shape.rank and t.shape[-1] == out.shape[-1]]
        layouts = [self.layout[id(t)] for t in full]
        kept = {id(t) for t in full}
        for t in inputs:
            if id(t) not in kept:  # broadcast over the channels (a size-1 tensor, a scalar map)
                self.refuse_layout(self.layout[id(t)], f"{layer.name}: broadcast over channels")
        shapes = {(*tuple(n for _, n in lay.segments), lay.repeat) for lay in layouts}
        if not layouts or len(shapes) != 1:
            self.refuse_node(layer, inputs, [out], "inputs whose channels are split differently")
            return
        first = layouts[0]
        for other in layouts[1:]:
            for (a, _), (b, _) in zip(first.segments, other.segments, strict=True):
                self.spaces.union(a, b)
        self.set(layer, out, first)

    def concatenate(self, layer: Any, inputs: list[Any], out: Any) -> None:
        rank = out.shape.rank
        if layer.axis % rank != rank - 1:  # along another axis: the channels must line up
            self.merge(layer, inputs, out)
            return
        layouts = [self.layout[id(t)] for t in inputs]
        if any(lay.repeat > 1 for lay in layouts):
            self.refuse_node(layer, inputs, [out], "Concatenate of flattened tensors")
            return
        self.set(layer, out, Layout(tuple(s for lay in layouts for s in lay.segments)))

    # -- result ---------------------------------------------------------------------------
    def graph(self) -> ChannelGraph:
        s = self.spaces
        roots = sorted({s.find(i) for i in range(len(s.parent))})
        groups = []
        for root in roots:
            producers = list(dict.fromkeys(s.producers[root]))
            name = producers[0] if producers else self.first_producer[root]
            if len(producers) > 1:
                name = f"{name}+{len(producers) - 1}"
            groups.append(ChannelGroup(
                id=root, name=name, size=s.size[root], refs=list(s.refs[root]),
                producers=producers, consumers=list(dict.fromkeys(s.consumers[root])),
                reshapes=list(dict.fromkeys(s.reshapes[root])),
                probes=list(dict.fromkeys(s.probes[root])),
                refused=list(dict.fromkeys(s.refused[root]))))
        layouts = {name: Layout(tuple((s.find(sid), n) for sid, n in lay.segments), lay.repeat)
                   for name, lay in self.layer_layout.items()}
        types = {layer.name: _type(layer) for layer in self.model.layers}
        return ChannelGraph(groups=groups, layouts=layouts, layer_types=types)


def build_channel_graph(model: keras.Model) -> ChannelGraph:
    """Finds the dependency groups of a flat Sequential or Functional tf_keras model.

    Args:
        model: The model (nested models must be flattened first; see
            :func:`edgekit.compress.layer_support.flatten_model`).

    Returns:
        The groups (prunable and refused, with reasons) and every layer's output layout.

    Raises:
        InputError: A subclassed model, or a nested model inside it.
    """
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network",
                                                               False):
        raise InputError(f"model {model.name!r} is a subclassed Keras model; channel pruning "
                         "needs a Sequential or Functional model (rebuild it with the "
                         "functional API)")
    return _Builder(model).run()


def select_groups(graph: ChannelGraph, model: keras.Model, selection: Any
                  ) -> tuple[list[ChannelGroup], dict[str, str]]:
    """The prunable groups a layer selection picks, and the others with the reason they stay.

    Args:
        graph: The model's channel graph.
        model: The flat model it describes.
        selection: A ``LayerSelection`` (its ``decide(layer)`` gives a reason to leave a layer,
            or None to take it).

    Returns:
        ``(chosen groups, {left group: why})``; groups without producers are neither.
    """
    chosen, left = [], {}
    for g in graph.groups:
        if not g.producers:
            continue
        if g.refused:
            left[g.name] = "; ".join(g.refused)
            continue
        reasons = [selection.decide(model.get_layer(p)) for p in g.producers]
        excluded = [r for r in reasons if r and "layers.exclude" in r]
        if excluded:
            left[g.name] = excluded[0]
        elif all(reasons):
            left[g.name] = reasons[0] or ""
        else:
            chosen.append(g)
    return chosen, left
