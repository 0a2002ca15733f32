"""Command-line flags generated from the config dataclasses: a field's `metadata` is its flag.

A config field becomes the flag `--field-name` when its `dataclasses.field(metadata=...)` has a `help`; the rest of
the metadata is handed to `argparse` (`type`, `choices`, `metavar`; `group` names an argument group) and the
field's default is appended to the help, read from the dataclass so that help and behaviour cannot drift apart.
A `bool` field is a switch, a `tuple` field takes comma-separated values (each parsed by `type`). Every generated
flag defaults to None, "not given", so a resumed run keeps its stored value for every flag left out.

    latent_dim: int = dataclasses.field(default=100, metadata={"help": "noise size", "type": positive_int})

The validators raise `argparse.ArgumentTypeError`, which argparse turns into a one-line usage error.
"""

from __future__ import annotations

import argparse
import dataclasses


# ---------------------------------------------------------------------------------------------------- validators
def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def open_unit_interval(text: str) -> float:
    """A probability mass such as top-p: in (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def comma_separated(parse=float):
    """`0,0.05,0.1` -> (0.0, 0.05, 0.1), each part read by `parse`; ranges are the library's check."""
    def values(text: str) -> tuple:
        try:
            return tuple(parse(part) for part in text.split(",") if part.strip())
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None

    values.__name__ = f"comma_separated_{parse.__name__}"
    return values


# ---------------------------------------------------------------------------------------------------- the generator
def flag_fields(config_class) -> list[dataclasses.Field]:
    """The fields of a config dataclass that are command-line flags (those whose metadata has a `help`)."""
    return [f for f in dataclasses.fields(config_class) if "help" in f.metadata]


def shown_default(field: dataclasses.Field) -> str:
    """A field's default as `--help` shows it: `0,0.05,0.1` for a tuple, `none` for "" or None."""
    value = field.default
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return "none" if value in ("", None) else str(value)


def add_config_flags(parser, config_class, where: dict | None = None, only=None, skip=(), **extra) -> None:
    """Add a `--field-name` flag for every flag field of `config_class` to `parser`.

    Args:
        only, skip: the fields to add (default: all flag fields) and those to leave out, by name.
        where: `{field name: container}` for flags that belong to a group of the parser (a mutually exclusive
            `--epochs` / `--steps`); fields whose metadata names a `group` go to an argument group of that title.
        extra: `{field name: {argparse keyword: value}}` known only above the config's layer (a dataset's
            choices come from `aigc_tf.data`, which the configs do not import).
    """
    where, groups = dict(where or {}), {}
    for field in flag_fields(config_class):
        if (only is not None and field.name not in only) or field.name in skip:
            continue
        options = {k: v for k, v in field.metadata.items() if k not in ("help", "group")}
        options.update(extra.get(field.name, {}))
        text = field.metadata["help"]  # "{default}" is filled in; a help that names its default is kept as it is
        help_text = text.format(default=shown_default(field)) if "{default}" in text else text if "default" in \
            text else f"{text} (default: {shown_default(field)})"
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
        if kind == "bool":  # a switch: off unless given
            options, help_text = {"action": "store_true", **options}, text
        elif kind.startswith("tuple"):
            options["type"] = comma_separated(options.get("type", float))
        if "group" in field.metadata and field.name not in where:
            title = field.metadata["group"]
            where[field.name] = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title))
        where.get(field.name, parser).add_argument("--" + field.name.replace("_", "-"), dest=field.name,
                                                   default=None, help=help_text, **options)


def given_flags(args, config_class) -> dict:
    """`{field: value}` for the flag fields of `config_class` given on the command line (None: not given)."""
    return {f.name: getattr(args, f.name) for f in flag_fields(config_class) if getattr(args, f.name) is not None}
