"""A strict reader of the Prometheus text exposition format (0.0.4), for tests.

Checks what a scraper relies on: metric and label names, label-value quoting and escapes,
numeric values, HELP/TYPE at most once per family and before its samples, the samples of one
family together, sample names allowed by the family's type, no duplicate series, and a final
newline. Returns the samples so tests can read values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "summary", "histogram", "untyped")
_SUFFIXES = {"summary": ("", "_sum", "_count"), "histogram": ("_bucket", "_sum", "_count")}


class ExpositionError(AssertionError):
    pass


@dataclass
class Family:
    name: str
    type: str = "untyped"
    help: str | None = None
    samples: list["Sample"] = field(default_factory=list)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)


def _unescape_label(raw: str, line: str) -> tuple[str, int]:
    """Read a quoted label value starting after the opening quote; (value, chars consumed)."""
    out, i = [], 0
    while i < len(raw):
        char = raw[i]
        if char == "\\":
            if i + 1 >= len(raw) or raw[i + 1] not in '\\"n':
                raise ExpositionError(f"bad escape in label value: {line!r}")
            out.append({"\\": "\\", '"': '"', "n": "\n"}[raw[i + 1]])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        elif char == "\n":
            raise ExpositionError(f"newline in label value: {line!r}")
        else:
            out.append(char)
            i += 1
    raise ExpositionError(f"unterminated label value: {line!r}")


def _value(text: str, line: str) -> float:
    if text in ("NaN", "+Inf", "-Inf", "Inf"):
        return {"NaN": math.nan, "+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf}[text]
    try:
        return float(text)
    except ValueError:
        raise ExpositionError(f"bad value {text!r}: {line!r}") from None


def _sample(line: str) -> Sample:
    match = METRIC_NAME.match(line)
    if not match:
        raise ExpositionError(f"bad metric name: {line!r}")
    name, rest = match.group(), line[match.end():]
    labels: list[tuple[str, str]] = []
    if rest.startswith("{"):
        rest = rest[1:]
        while not rest.startswith("}"):
            label = LABEL_NAME.match(rest)
            if not label or label.group().startswith("__"):
                raise ExpositionError(f"bad label name: {line!r}")
            rest = rest[label.end():]
            if not rest.startswith('="'):
                raise ExpositionError(f'label without ="value": {line!r}')
            value, used = _unescape_label(rest[2:], line)
            labels.append((label.group(), value))
            rest = rest[2 + used:]
            if rest.startswith(","):
                rest = rest[1:]
            elif not rest.startswith("}"):
                raise ExpositionError(f"bad label list: {line!r}")
        rest = rest[1:]
        if len({k for k, _ in labels}) != len(labels):
            raise ExpositionError(f"repeated label: {line!r}")
    if not rest.startswith(" "):
        raise ExpositionError(f"no space before the value: {line!r}")
    parts = rest.split()
    if len(parts) not in (1, 2):
        raise ExpositionError(f"expected a value and at most a timestamp: {line!r}")
    if len(parts) == 2 and not re.fullmatch(r"-?[0-9]+", parts[1]):
        raise ExpositionError(f"bad timestamp: {line!r}")
    return Sample(name, tuple(labels), _value(parts[0], line))


def parse(text: str) -> dict[str, Family]:
    """Validate ``text``; its families by name. Raises :class:`ExpositionError`."""
    if text and not text.endswith("\n"):
        raise ExpositionError("the exposition must end with a newline")
    families: dict[str, Family] = {}
    closed: set[str] = set()   # families whose samples ended (another family's began)
    current: str | None = None
    series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def family_of(sample_name: str) -> str:
        for family in families.values():
            for suffix in _SUFFIXES.get(family.type, ("",)):
                if suffix and sample_name == family.name + suffix or sample_name == family.name:
                    return family.name
        return sample_name

    def enter(name: str) -> None:
        nonlocal current
        if current != name:
            if name in closed:
                raise ExpositionError(f"samples of {name} are not together")
            if current is not None:
                closed.add(current)
            current = name

    for line in text.split("\n"):  # only \n ends a line (a \r may sit in a label value)
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 3 or not METRIC_NAME.fullmatch(parts[2]):
                    raise ExpositionError(f"bad {parts[1]} line: {line!r}")
                name = parts[2]
                family = families.setdefault(name, Family(name))
                if parts[1] == "HELP":
                    if family.help is not None:
                        raise ExpositionError(f"second HELP for {name}")
                    family.help = parts[3] if len(parts) > 3 else ""
                else:
                    if len(parts) < 4 or parts[3] not in TYPES:
                        raise ExpositionError(f"bad TYPE line: {line!r}")
                    if family.samples or family.type != "untyped":
                        raise ExpositionError(f"TYPE of {name} repeated or after its samples")
                    family.type = parts[3]
                enter(name)
            continue
        sample = _sample(line)
        name = family_of(sample.name)
        family = families.setdefault(name, Family(name))
        enter(name)
        allowed = [name + suffix for suffix in _SUFFIXES.get(family.type, ("",))]
        if sample.name not in allowed:
            raise ExpositionError(f"sample {sample.name} not allowed in {family.type} {name}")
        key = (sample.name, tuple(sorted(sample.labels)))
        if key in series:
            raise ExpositionError(f"duplicate series: {line!r}")
        series.add(key)
        family.samples.append(sample)
    return families


def samples(text: str, name: str) -> list[Sample]:
    """Every sample named ``name`` in a valid exposition."""
    return [s for family in parse(text).values() for s in family.samples if s.name == name]
