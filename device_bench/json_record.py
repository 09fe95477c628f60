"""Frozen JSON records: dataclasses whose ``to_dict()`` / ``from_dict()`` follow their fields.

A :class:`JsonRecord` subclass is a frozen, keyword-only dataclass. Its JSON object has one key per
field, in field order, so ``to_dict()`` writes the keys in the order the fields are declared and
``from_dict(d).to_dict() == d`` for every ``d`` it accepts. Field types say what a key holds::

    str | None                 a string or null
    float                      a number (an int is kept as the int it was)
    tuple[Row, ...]            an array of Row records
    Mapping[str, BenchResult]  an object of records keyed by name
    Any                        any JSON value, kept as it is (a block another module owns)

A field with a default may be missing when read (it reads as the default). Its metadata
:data:`OMIT_NONE` / :data:`OMIT_FALSE` also leaves the key out of the JSON while the value is
None / False (``"final": true`` only on the final entry)::

    arm: ArmCheck | None = field(default=None, metadata=OMIT_NONE)

``from_dict`` rejects unknown keys, missing keys and values of the wrong type with one line that
names the path (``report.stages[4].bench['local'].latency_ms.p50 must be a number or null, got
'fast'``).

A union of records (``Selective | SelectiveSkipped``) is resolved by each record's
:meth:`JsonRecord.claims`: the first that claims the mapping parses it.

Standard library only: device_bench runs on boards.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

__all__ = ["OMIT_FALSE", "OMIT_NONE", "JsonRecord", "check_value", "parse_fields", "parse_value"]

R = TypeVar("R", bound="JsonRecord")
_NONE = type(None)
_REPR_LIMIT = 80


OMIT_NONE: Mapping[str, Any] = types.MappingProxyType({"omit_if": None})
"""Field metadata: the key is left out of the JSON while the value is None."""
OMIT_FALSE: Mapping[str, Any] = types.MappingProxyType({"omit_if": False})
"""Field metadata: the key is left out of the JSON while the value is False."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[:_REPR_LIMIT - 3] + "..."


def _is(value: Any, default: Any) -> bool:
    if default is None or isinstance(default, bool):
        return value is default
    return bool(value == default)


def _describe(tp: Any) -> str:
    """``tp`` in words, for error messages."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        words = [_describe(a) for a in args if a is not _NONE]
        text = " or ".join(words)
        return f"{text} or null" if _NONE in args else text
    if origin is tuple:
        return f"a list (each {_describe(args[0])})"
    if origin in (Mapping, dict):
        return f"a mapping of names (each {_describe(args[1])})"
    if isinstance(tp, type) and issubclass(tp, JsonRecord):
        return f"a {tp.what} mapping"
    if dataclasses.is_dataclass(tp):
        return f"a {tp.__name__} mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            _NONE: "null"}.get(tp, "a JSON value")


def _copy(value: Any) -> Any:
    """A copy of a JSON value (objects and arrays copied, tuples become lists)."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


def _scalar_ok(value: Any, tp: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is _NONE:
        return value is None
    raise TypeError(f"unsupported field type {tp!r}")


def _is_scalar_type(tp: Any) -> bool:
    return tp in (bool, int, float, str, _NONE)


def check_value(value: Any, tp: Any) -> bool:
    """Tells whether a Python value already has type ``tp`` (records built, tuples for lists).

    Args:
        value: The value.
        tp: A field type (see the module docstring).

    Returns:
        True when it conforms.
    """
    if tp is Any:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(check_value(value, a) for a in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(check_value(v, args[0]) for v in value)
    if origin in (Mapping, dict):
        return isinstance(value, Mapping) and all(
            isinstance(k, str) and check_value(v, args[1]) for k, v in value.items())
    if isinstance(tp, type) and (issubclass(tp, JsonRecord) or dataclasses.is_dataclass(tp)):
        return isinstance(value, tp)
    return _scalar_ok(value, tp)


def parse_value(value: Any, tp: Any, where: str, error: type[Exception]) -> Any:
    """Turns a JSON value into a value of type ``tp``.

    Args:
        value: The JSON value.
        tp: A field type (see the module docstring).
        where: Its path, for messages.
        error: The exception type to raise.

    Returns:
        The value: records built, arrays as tuples, mappings as fresh dicts.

    Raises:
        Exception: ``error`` with one line naming ``where``, what was expected and what came.
    """
    if tp is Any:
        return _copy(value)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        options = [a for a in args if a is not _NONE]
        if len(options) == 1 and not _is_scalar_type(options[0]):
            return parse_value(value, options[0], where, error)  # its message names the part
        records = [a for a in options if isinstance(a, type) and issubclass(a, JsonRecord)]
        if records and isinstance(value, Mapping):
            chosen = next((r for r in records if r.claims(value)), records[0])
            return chosen.from_dict(value, where)
        for option in options:
            if not (isinstance(option, type) and issubclass(option, JsonRecord)):
                try:
                    return parse_value(value, option, where, error)
                except ValueError:
                    continue
        raise error(f"{where} must be {_describe(tp)}, got {_short(value)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise error(f"{where} must be {_describe(tp)}, got {_short(value)}")
        return tuple(parse_value(v, args[0], f"{where}[{i}]", error) for i, v in enumerate(value))
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise error(f"{where} must be {_describe(tp)}, got {_short(value)}")
        return {k: parse_value(v, args[1], f"{where}[{k!r}]", error) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, JsonRecord):
        return tp.from_dict(value, where)
    if dataclasses.is_dataclass(tp):
        return tp(**parse_fields(tp, value, where, error))
    if not _scalar_ok(value, tp):
        raise error(f"{where} must be {_describe(tp)}, got {_short(value)}")
    return value


def _hints(cls: type) -> dict[str, Any]:
    cached = cls.__dict__.get("_json_hints")
    if cached is None:
        cached = typing.get_type_hints(cls)
        cls._json_hints = cached  # type: ignore[attr-defined]
    return cached


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def parse_fields(cls: type, data: Any, where: str, error: type[Exception]) -> dict[str, Any]:
    """The constructor arguments of dataclass ``cls`` from a JSON object.

    Args:
        cls: A dataclass (a :class:`JsonRecord` or any other).
        data: The JSON object.
        where: Its path, for messages.
        error: The exception type to raise.

    Returns:
        ``{field name: parsed value}`` for the keys present (missing optional keys left out).

    Raises:
        Exception: ``error`` for a value that is not a mapping, an unknown or missing key, or a
            value of the wrong type.
    """
    fields = dataclasses.fields(cls)
    known = [f.name for f in fields]
    what = getattr(cls, "what", cls.__name__)
    if not isinstance(data, Mapping):
        raise error(f"{where} must be a mapping ({what}), got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise error(f"unknown key(s) {unknown} in {where}; known keys: {', '.join(known)}")
    missing = [f.name for f in fields if f.name not in data and not _has_default(f)]
    if missing:
        raise error(f"missing key(s) {missing} in {where}; expected keys: {', '.join(known)}")
    hints = _hints(cls)
    return {f.name: parse_value(data[f.name], hints[f.name], f"{where}.{f.name}", error)
            for f in fields if f.name in data}


def _dump(value: Any) -> Any:
    if isinstance(value, JsonRecord):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    return value


class JsonRecord:
    """Base of the frozen JSON records (declare subclasses ``@dataclass(frozen=True,
    kw_only=True)``).

    Attributes:
        what: What the record is, in words (messages: ``bench result``, ``report``).
        error: The exception type of its messages (``BenchInputError``, ``InputError``).
        schema_id: When set, the record's ``schema`` field must hold it; ``from_dict`` checks it
            before anything else.
    """

    what: ClassVar[str] = "record"
    error: ClassVar[type[Exception]] = ValueError
    schema_id: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if not check_value(value, hints[f.name]):
                raise self.error(f"{self.what}: {f.name} must be {_describe(hints[f.name])}, "
                                 f"got {_short(value)}")
        if self.schema_id is not None and getattr(self, "schema", None) != self.schema_id:
            raise self.error(f"{self.what}: schema must be {self.schema_id!r}, "
                             f"got {getattr(self, 'schema', None)!r}")

    @classmethod
    def claims(cls, data: Mapping[str, Any]) -> bool:
        """Tells whether a mapping is this record rather than another of a union (default yes).

        Args:
            data: The JSON object.

        Returns:
            True when this record should parse it.
        """
        return True

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: one key per field in field order (omitted fields at their default
        left out), records and tuples turned into objects and lists, mappings copied.

        Returns:
            A fresh JSON-ready dict.
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if "omit_if" in f.metadata and _is(value, f.metadata["omit_if"]):
                continue
            out[f.name] = _dump(value)
        return out

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str | None = None) -> R:
        """Builds the record from its JSON object (the inverse of :meth:`to_dict`).

        Args:
            data: The JSON object.
            where: Its path in a larger document, for messages (default: :attr:`what`).

        Returns:
            The record.

        Raises:
            Exception: :attr:`error`, one line naming the path, for a wrong ``schema``, an
                unknown or missing key, or a value of the wrong type.
        """
        where = where or cls.what
        if cls.schema_id is not None:
            got = data.get("schema") if isinstance(data, Mapping) else type(data).__name__
            if got != cls.schema_id:
                raise cls.error(f"{where} must have schema {cls.schema_id!r}, got {got!r}")
        return cls(**parse_fields(cls, data, where, cls.error))
