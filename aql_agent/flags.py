"""Command-line flags derived from the settings dataclasses (`TrainSettings`, `FinetuneSettings`,
`MakeDatasetSettings`): each field is a `--field-name` flag whose help is the field's docstring and whose
default is the field's own, so no default or help text is written twice.

    add_settings_flags(parser, TrainSettings, skip=("learner",), choices={"algo": list(ALGORITHMS)})
    settings = settings_from_args(TrainSettings, args, learner=overrides)

Booleans: a field that defaults to False is a switch (`--resume`); one that defaults to True is turned off
(`--no-progress`). `Literal[...]` fields take one of their values, tuple fields one or more values.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (and of its dataclass bases), read from its source (once
    per class: parsing the source is most of the time a command line takes to build)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        except (OSError, TypeError):  # no source (a frozen app): flags without help text
            continue
        for node, following in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) == 1:
            return options[0]
    return hint


def add_settings_flags(parser: argparse.ArgumentParser, cls: type, skip: Iterable[str] = (),
                       choices: Mapping[str, Iterable[Any]] | None = None) -> None:
    """One flag per field of the dataclass `cls`, except those in `skip` (the caller adds its own for them)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    choices = dict(choices or {})
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        name = field.name.replace("_", "-")
        hint = _unwrap_optional(hints[field.name])
        text = docs.get(field.name, "")
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if hint is bool:
            if field.default:
                parser.add_argument(f"--no-{name}", dest=field.name, action="store_false",
                                    help=f"turn off: {text[0].lower()}{text[1:]}" if text else None)
            else:
                parser.add_argument(f"--{name}", dest=field.name, action="store_true", help=text or None)
            continue
        options: dict[str, Any] = {"dest": field.name}
        origin = typing.get_origin(hint)
        if origin is typing.Literal:
            options["choices"] = list(typing.get_args(hint))
        elif origin in (tuple, list):
            options["nargs"] = "+"
            options["type"] = typing.get_args(hint)[0]
        elif hint in (int, float, str):
            options["type"] = hint
        else:
            raise TypeError(f"{cls.__name__}.{field.name}: no flag for type {hint!r}; skip it and add one by hand")
        if field.name in choices:
            options["choices"] = list(choices[field.name])
        if required:
            options["required"] = True
        else:
            options["default"] = field.default
            if field.default is not None and field.default != ():
                shown = (" ".join(map(str, field.default)) if isinstance(field.default, tuple)
                         else f"{field.default:.6g}" if isinstance(field.default, float) else field.default)
                text = f"{text} (default: {shown})".strip()
        options["help"] = text.replace("%", "%%") or None
        parser.add_argument(f"--{name}", **options)


def settings_from_args(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """The dataclass built from the parsed flags (lists back to tuples), with `values` on top."""
    hints = typing.get_type_hints(cls)
    fields = {}
    for field in dataclasses.fields(cls):
        if field.name in values or not hasattr(args, field.name):
            continue
        value = getattr(args, field.name)
        if isinstance(value, list) and typing.get_origin(_unwrap_optional(hints[field.name])) is tuple:
            value = tuple(value)
        fields[field.name] = value
    return cls(**fields, **values)
