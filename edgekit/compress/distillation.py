"""Knowledge distillation machinery: the loss, the settings, the trainer, the teacher binding.

The loss (Hinton et al. 2015; the project seeds' formula)::

    L = alpha * KL(p_T || q_T) * T**2 + (1 - alpha) * CE(y, q)
    p_T = softmax(teacher_logits / T)
    q_T = softmax(student_logits / T),  q = softmax(student_logits)

plus, when ``feature_layer`` is set, ``weight * MSE(proj(student_feature), teacher_feature)``
(FitNets-style hints; ``proj`` is a learned 1x1 conv / Dense, used only when the shapes differ).

Logits: edgekit's models end in logits. A model whose output is a probability vector (a final
softmax; detected numerically: every row of its output on the first batch lies in [0, 1] and sums
to 1) is turned into logits by taking ``log(p)``: ``log softmax(z) = z - logsumexp(z)`` differs from
``z`` by a per-sample constant, which neither ``softmax(. / T)`` nor the cross-entropy sees, so
this is exact up to float underflow (probabilities are clipped at 1e-30 first).

The same trainer runs inside Prune / QAT / LowRank (their ``distill`` field), where the student is
the tfmot-wrapped model: training goes through the wrapped layers, so the pruning masks and QAT
ranges update as in a plain fit, and tfmot's ``UpdatePruningStep`` finds the wrappers (it walks
nested models, and the student is a nested model of the :class:`Distiller`).

This module is used by every stage that fine-tunes (their ``distill`` field, through
:meth:`edgekit.compress.base.SerializableStage.fine_tune`) and by the :class:`Distill` stage
(:mod:`edgekit.compress.distill`); it knows neither.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.compress.training import (
    _check_fit_args,
    epoch_progress,
    shifted_batches,
    steps_per_epoch,
)
from edgekit.core._keras import keras, tf
from edgekit.core.checks import checked_kwargs
from edgekit.core.errors import InputError
from edgekit.core.model_io import load_model

FLOAT_TEACHER = "float"
SPARSE_THRESHOLD = 0.2  # a kernel with at least this share of zeros counts as pruned
LOG_CLIP = 1e-30
UNLABELED = -1  # the label of a transfer sample: the teacher's output is its only target


def distillation_loss(
    y: Any, student_logits: Any, teacher_logits: Any, *, temperature: float, alpha: float
) -> tuple[Any, Any, Any]:
    """The distillation loss, batch-averaged.

    Args:
        y: Integer labels, shape (N,); ``UNLABELED`` (-1) marks a sample without a label, which
            counts in the KL term only.
        student_logits: Student logits, shape (N, C).
        teacher_logits: Teacher logits, shape (N, C).
        temperature: T > 0.
        alpha: Weight of the soft (KL) term, in [0, 1].

    Returns:
        ``(total, kl_times_t2, ce)`` as scalar tensors: ``total = alpha * kl_times_t2 + (1 -
        alpha) * ce``; ``kl_times_t2`` is averaged over every sample, ``ce`` over the labelled
        ones (0 when the batch has none).
    """
    s = tf.cast(student_logits, tf.float32)
    t = tf.cast(teacher_logits, tf.float32)
    log_q_t = tf.nn.log_softmax(s / temperature, axis=-1)
    log_p_t = tf.nn.log_softmax(t / temperature, axis=-1)
    kl = tf.reduce_mean(tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - log_q_t), axis=-1))
    kl_t2 = kl * temperature**2
    labels = tf.cast(tf.reshape(y, [-1]), tf.int32)
    labelled = tf.cast(labels >= 0, tf.float32)
    per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(labels, 0),
                                                                logits=s)
    ce = tf.reduce_sum(per_sample * labelled) / tf.maximum(tf.reduce_sum(labelled), 1.0)
    return alpha * kl_t2 + (1.0 - alpha) * ce, kl_t2, ce


def are_probabilities(outputs: np.ndarray, atol: float = 1e-3) -> bool:
    """True when every row of ``outputs`` is a probability vector (in [0, 1], sums to 1)."""
    out = np.asarray(outputs, dtype=np.float64)
    if out.ndim != 2 or out.shape[-1] < 2:
        return False
    in_range = bool(np.all(out >= -1e-6) and np.all(out <= 1 + 1e-6))
    return in_range and bool(np.allclose(out.sum(axis=-1), 1.0, atol=atol))


def to_logits(outputs: Any, probabilities: bool) -> Any:
    """Logits from a model's outputs: unchanged, or ``log(clip(p))`` for probabilities."""
    out = tf.cast(outputs, tf.float32)
    return tf.math.log(tf.maximum(out, LOG_CLIP)) if probabilities else out


@dataclass(frozen=True)
class FeatureHint:
    """Feature distillation between two named layers.

    Attributes:
        teacher: Name of the teacher layer.
        student: Name of the student layer (a tfmot wrapper around it is found by the inner name).
        weight: Weight of the MSE term.
    """

    teacher: str
    student: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        for field_name in ("teacher", "student"):
            if not isinstance(getattr(self, field_name), str) or not getattr(self, field_name):
                raise InputError(f"feature_layer.{field_name} must be a layer name, got "
                                 f"{getattr(self, field_name)!r}")
        if not isinstance(self.weight, (int, float)) or self.weight < 0:
            raise InputError(f"feature_layer.weight must be a number >= 0, got {self.weight!r}")

    @classmethod
    def parse(cls, value: Any) -> FeatureHint | None:
        """Builds it from ``{teacher, student, weight}`` (None stays None).

        Raises:
            InputError: Not a mapping, unknown keys, or bad values.
        """
        if value is None:
            return None
        kwargs = checked_kwargs(cls, value, "feature_layer")
        missing = [k for k in ("teacher", "student") if k not in kwargs]
        if missing:
            raise InputError(f"feature_layer needs {' and '.join(missing)} (layer names), got "
                             f"{value!r}")
        return cls(**kwargs)


@dataclass(frozen=True)
class DistillConfig:
    """How a teacher guides a fine-tune (the ``distill`` field of Prune / QAT / LowRank).

    Attributes:
        teacher: ``"float"`` (the pipeline's float model; outside a pipeline: the model the stage
            starts from) or a path to a model file.
        temperature: Softening temperature T > 0.
        alpha: Weight of the KL term in [0, 1] (1 - alpha weighs the hard-label cross-entropy).
        feature_layer: Optional ``{teacher, student, weight}`` feature hint.
    """

    teacher: str = FLOAT_TEACHER
    temperature: float = 4.0
    alpha: float = 0.9
    feature_layer: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_distill_values(self.temperature, self.alpha, self.teacher)
        FeatureHint.parse(self.feature_layer)

    @classmethod
    def from_dict(cls, value: Any, where: str = "distill") -> DistillConfig:
        """Builds it from a mapping, rejecting unknown keys (all known ones are listed).

        Raises:
            InputError: Not a mapping, unknown keys, or bad values.
        """
        if value is None:
            raise InputError(f"{where} must be a mapping, got None")
        return cls(**checked_kwargs(cls, value, where))


def check_distill_values(temperature: Any, alpha: Any, teacher: Any) -> None:
    """Validates the shared distillation settings.

    Raises:
        InputError: ``temperature`` not > 0, ``alpha`` outside [0, 1], ``teacher`` not a string.
    """
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise InputError(f"temperature must be a number > 0, got {temperature!r}")
    if not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha!r}")
    if teacher is not None and (not isinstance(teacher, (str, os.PathLike)) or not str(teacher)):
        raise InputError(f"teacher must be 'float' or a model path, got {teacher!r}")


def load_teacher(spec: str | None, fallback: keras.Model | None, where: str) -> keras.Model:
    """The teacher model a config names.

    Args:
        spec: ``"float"``/None (use ``fallback``) or a model path.
        fallback: The model the stage starts from.
        where: The stage, for the message.

    Returns:
        The teacher (never trained here).

    Raises:
        InputError: A missing or unloadable path, or "float" with no fallback.
    """
    if spec is None or spec == FLOAT_TEACHER:
        if fallback is None:
            raise InputError(f"{where}: teacher 'float' needs the model the stage starts from")
        return fallback
    return load_model(spec)


def find_layer(model: keras.Model, name: str, role: str) -> keras.layers.Layer:
    """A layer by name, also found through a tfmot wrapper (``prune_low_magnitude_x``/``quant_x``).

    Raises:
        InputError: No such layer (the known names are listed).
    """
    for layer in model.layers:
        if layer.name == name or getattr(getattr(layer, "layer", None), "name", None) == name:
            return layer
    names = [getattr(getattr(lay, "layer", lay), "name", lay.name) for lay in model.layers]
    raise InputError(f"feature_layer.{role}: {role} model {model.name!r} has no layer {name!r}; "
                     f"its layers: {', '.join(names)}")


def _projection(student_shape: tuple[Any, ...], teacher_shape: tuple[Any, ...]) -> Any:
    if tuple(student_shape[1:]) == tuple(teacher_shape[1:]):
        return None
    if len(student_shape) == 4 and len(teacher_shape) == 4 and (
        tuple(student_shape[1:3]) == tuple(teacher_shape[1:3])
    ):
        return keras.layers.Conv2D(int(teacher_shape[-1]), 1, use_bias=False, name="hint_proj")
    if len(student_shape) == 2 and len(teacher_shape) == 2:
        return keras.layers.Dense(int(teacher_shape[-1]), use_bias=False, name="hint_proj")
    raise InputError(f"feature_layer: student output {tuple(student_shape)} cannot be projected "
                     f"onto teacher output {tuple(teacher_shape)}; pick layers with the same "
                     "spatial size (a 1x1 conv or Dense projection maps the channels)")


@functools.cache
def distiller_class() -> type:
    """The :class:`Distiller` Keras model class (built on first use, so that importing this module
    does not load TensorFlow).

    Returns:
        The class; ``distiller_class()(student, teacher, temperature=..., alpha=...)``.
    """

    class Distiller(keras.Model):
        """Trains ``student`` against a frozen ``teacher`` with :func:`distillation_loss`.

        Args:
            student: The model being trained (plain, pruning- or QAT-wrapped).
            teacher: The guiding model (inference mode only; its weights never change).
            temperature: T.
            alpha: Weight of the KL term.
            student_probabilities: The student's output is probabilities (log taken).
            teacher_probabilities: The teacher's output is probabilities.
            hint: Optional feature hint.
            keep_zero: ``(variable, mask)`` pairs: the mask is re-applied after every step.
        """

        def __init__(self, student: keras.Model, teacher: keras.Model, *, temperature: float,
                     alpha: float, student_probabilities: bool = False,
                     teacher_probabilities: bool = False, hint: FeatureHint | None = None,
                     keep_zero: Sequence[tuple[Any, np.ndarray]] = ()) -> None:
            super().__init__(name="distiller")
            self.student = student
            self.teacher = teacher
            self.temperature = float(temperature)
            self.alpha = float(alpha)
            self.student_probabilities = student_probabilities
            self.teacher_probabilities = teacher_probabilities
            self.hint = hint
            self._keep_zero = [(v, tf.constant(m, dtype=v.dtype)) for v, m in keep_zero]
            self.projection = None
            if hint is not None:
                s_layer = find_layer(student, hint.student, "student")
                t_layer = find_layer(teacher, hint.teacher, "teacher")
                self.student_taps = keras.Model(student.inputs,
                                                [student.outputs[0], s_layer.output])
                self.teacher_taps = keras.Model(teacher.inputs,
                                                [teacher.outputs[0], t_layer.output])
                self.projection = _projection(tuple(s_layer.output.shape),
                                              tuple(t_layer.output.shape))
                if self.projection is not None:
                    self.projection.build(s_layer.output.shape)
            names = ["loss", "kd", "ce", "accuracy", "agreement"] + (["hint"] if hint else [])
            self._trackers = {n: keras.metrics.Mean(name=n) for n in names}

        @property
        def metrics(self) -> list[Any]:
            """Per-epoch means (reset by Keras at each epoch)."""
            return list(self._trackers.values())

        def call(self, inputs: Any, training: bool | None = None) -> Any:
            """The student's output."""
            return self.student(inputs, training=training)

        def _variables_to_train(self) -> list[Any]:
            extra = self.projection.trainable_variables if self.projection is not None else []
            return list(self.student.trainable_variables) + list(extra)

        def train_step(self, data: Any) -> dict[str, Any]:
            """One optimizer step on the distillation loss (+ hint, + the student's own losses)."""
            x, y = data
            if self.hint is not None:
                t_out, t_feat = self.teacher_taps(x, training=False)
            else:
                t_out, t_feat = self.teacher(x, training=False), None
            t_logits = to_logits(t_out, self.teacher_probabilities)
            with tf.GradientTape() as tape:
                if self.hint is not None:
                    s_out, s_feat = self.student_taps(x, training=True)
                else:
                    s_out, s_feat = self.student(x, training=True), None
                s_logits = to_logits(s_out, self.student_probabilities)
                total, kd, ce = distillation_loss(y, s_logits, t_logits,
                                                  temperature=self.temperature, alpha=self.alpha)
                hint_loss = None
                if self.hint is not None:
                    proj = self.projection(s_feat) if self.projection is not None else s_feat
                    diff = tf.cast(proj, tf.float32) - tf.cast(t_feat, tf.float32)
                    hint_loss = tf.reduce_mean(tf.square(diff))
                    total = total + self.hint.weight * hint_loss
                if self.student.losses:
                    total = total + tf.add_n(self.student.losses)
            variables = self._variables_to_train()
            grads = tape.gradient(total, variables)
            self.optimizer.apply_gradients(
                [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None])
            for var, mask in self._keep_zero:
                var.assign(var * mask)
            s_top = tf.argmax(s_logits, axis=-1, output_type=tf.int32)
            t_top = tf.argmax(t_logits, axis=-1, output_type=tf.int32)
            labels = tf.cast(tf.reshape(y, [-1]), tf.int32)
            self._trackers["loss"].update_state(total)
            self._trackers["kd"].update_state(kd)
            self._trackers["ce"].update_state(ce)
            self._trackers["accuracy"].update_state(tf.cast(tf.equal(s_top, labels), tf.float32),
                                                    sample_weight=tf.cast(labels >= 0, tf.float32))
            self._trackers["agreement"].update_state(tf.cast(tf.equal(s_top, t_top), tf.float32))
            if hint_loss is not None:
                self._trackers["hint"].update_state(hint_loss)
            return {name: t.result() for name, t in self._trackers.items()}

    return Distiller


def zero_masks(model: keras.Model, mode: str) -> list[tuple[Any, np.ndarray]]:
    """``(kernel variable, nonzero mask)`` for the kernels whose zeros must stay zero.

    Args:
        model: A plain model.
        mode: ``"auto"`` (kernels with >= 20 % zeros), ``"always"`` (every kernel with a zero),
            ``"never"``.

    Returns:
        The pairs for :class:`Distiller`'s ``keep_zero``.
    """
    if mode == "never":
        return []
    out = []
    for layer in model.layers:
        for w in layer.trainable_weights:
            if w.name.split("/")[-1].split(":")[0] not in ("kernel", "depthwise_kernel"):
                continue
            value = w.numpy()
            share = float(np.mean(value == 0.0)) if value.size else 0.0
            if (mode == "always" and share > 0) or share >= SPARSE_THRESHOLD:
                out.append((w, (value != 0.0).astype(np.float32)))
    return out


def fit_distilled(
    student: keras.Model, teacher: keras.Model, x: np.ndarray, y: np.ndarray, *,
    temperature: float, alpha: float, epochs: int, learning_rate: float, batch_size: int = 32,
    augment_shift: int = 2, seed: int = 0, feature_layer: dict[str, Any] | None = None,
    keep_zero: Sequence[tuple[Any, np.ndarray]] = (), callbacks: Sequence[Any] = (),
    desc: str = "distill", x_unlabeled: np.ndarray | None = None,
) -> dict[str, list[float]]:
    """Trains ``student`` on ``(x, y)`` guided by ``teacher`` (Adam, cosine-decayed rate).

    Batches and shifts are those of :func:`edgekit.compress.training.fit` (the teacher sees the same
    shifted batch as the student).

    Args:
        student: The model to train (in place).
        teacher: The guiding model (not trained).
        x: Training samples.
        y: Integer labels.
        temperature: T > 0.
        alpha: Weight of the KL term in [0, 1].
        epochs: Passes over the data.
        learning_rate: Peak learning rate.
        batch_size: Samples per step.
        augment_shift: Max random shift for image samples.
        seed: Seed of batches and augmentation.
        feature_layer: Optional ``{teacher, student, weight}`` feature hint.
        keep_zero: Kernel masks re-applied after each step (sparsity kept).
        callbacks: Extra callbacks (tfmot's ``UpdatePruningStep`` for a pruning-wrapped student).
        desc: Progress-bar label.
        x_unlabeled: Optional transfer samples without labels (Hinton et al.'s transfer set):
            shuffled in with ``x``, they train on the KL term only. An epoch is one pass over
            both.

    Returns:
        The history: ``loss``, ``kd`` (KL x T^2), ``ce``, ``accuracy`` (labelled samples),
        ``agreement`` (student
        top-1 == teacher top-1 on the training batches), ``hint`` when set; one value per epoch.

    Raises:
        InputError: Bad settings, teacher and student with different numbers of outputs, or
            unlabelled samples of another shape than ``x``.
    """
    _check_fit_args(epochs, learning_rate, batch_size, augment_shift)
    if x_unlabeled is not None and len(x_unlabeled):
        x_unlabeled = np.asarray(x_unlabeled, dtype=np.float32)
        if x_unlabeled.shape[1:] != np.shape(x)[1:]:
            raise InputError(f"unlabelled samples have shape {x_unlabeled.shape[1:]} but the "
                             f"training samples {np.shape(x)[1:]}; they must match")
        x = np.concatenate([np.asarray(x, dtype=np.float32), x_unlabeled])
        y = np.concatenate([np.asarray(y).reshape(-1),
                            np.full(len(x_unlabeled), UNLABELED, dtype=np.int64)])
    check_distill_values(temperature, alpha, None)
    hint = FeatureHint.parse(feature_layer)
    probe = x[: min(len(x), 64)]
    s_probe = np.asarray(student(probe, training=False))
    t_probe = np.asarray(teacher(probe, training=False))
    if s_probe.shape[-1] != t_probe.shape[-1]:
        raise InputError(f"teacher {teacher.name!r} has {t_probe.shape[-1]} outputs but student "
                         f"{student.name!r} has {s_probe.shape[-1]}; they must match")
    distiller = distiller_class()(student, teacher, temperature=temperature, alpha=alpha,
                          student_probabilities=are_probabilities(s_probe),
                          teacher_probabilities=are_probabilities(t_probe), hint=hint,
                          keep_zero=keep_zero)
    steps = steps_per_epoch(len(x), batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps)
    distiller.compile(optimizer=keras.optimizers.Adam(schedule))
    batches = shifted_batches(x, y, batch_size=batch_size, shift=augment_shift, seed=seed)
    history = distiller.fit(batches, steps_per_epoch=steps, epochs=epochs, verbose=0,
                            callbacks=[*callbacks, epoch_progress(epochs, desc)])
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def top1_agreement(a: keras.Model, b: keras.Model, x: np.ndarray) -> float:
    """Share of samples where two classifiers pick the same class."""
    pa = np.argmax(a.predict(x, batch_size=256, verbose=0), axis=-1)
    pb = np.argmax(b.predict(x, batch_size=256, verbose=0), axis=-1)
    return float(np.mean(pa == pb))


def bind_teacher(stage: Any, float_model: str | os.PathLike[str]) -> Any:
    """Points a stage's ``teacher: float`` at the pipeline's float model file.

    Args:
        stage: Any compression stage.
        float_model: The float stage's model file.

    Returns:
        The stage itself, or a copy whose teacher is ``float_model`` (Distill's ``teacher``, or
        the ``teacher`` of the ``distill`` field of Prune / QAT / LowRank).
    """
    path = str(Path(float_model))
    if "teacher" in {f.name for f in fields(stage)}:  # a stage that is itself distillation
        return replace(stage, teacher=path) if stage.teacher == FLOAT_TEACHER else stage
    distill = getattr(stage, "distill", None)
    if isinstance(distill, dict) and distill.get("teacher", FLOAT_TEACHER) == FLOAT_TEACHER:
        return replace(stage, distill={**distill, "teacher": path})
    return stage
