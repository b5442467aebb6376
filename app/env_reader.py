"""Reading ``EVENTIDE_*`` values: each parsed to its type, every bad one noted with what was
expected (:class:`app.settings.Settings` reports them all at once)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class EnvReader:
    """Parses ``EVENTIDE_*`` values, noting each bad one (with what was expected) instead of
    stopping at the first; a bad value's default is returned only so parsing can go on."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str) -> str:
        return self.env.get(name) or ""

    def _raw(self, name: str) -> str:
        return self.text(name).strip()

    def _bad(self, name: str, raw: str, expected: str) -> None:
        self.problems.append(f"{name}={raw!r}: {expected}")

    def integer(self, name: str, default: int, minimum: int | None = None,
                maximum: int | None = None) -> int:
        raw = self._raw(name)
        if not raw:
            return default
        bounds = ("" if minimum is None else f" from {minimum}") + (
            "" if maximum is None else f" to {maximum}")
        expected = f"expected a whole number{bounds}"
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            self._bad(name, raw, expected)
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self._bad(name, raw, expected)
            return default
        return value

    def number(self, name: str, default: float) -> float:
        raw = self._raw(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            self._bad(name, raw, "expected a number of seconds above 0")
            return default
        return value

    def choice(self, name: str, default: str | None, choices: Sequence[str],
               upper: bool = False) -> str | None:
        """One of ``choices``, any case (returned lower case, or upper with ``upper``)."""
        raw = self._raw(name)
        if not raw:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in choices:
            self._bad(name, raw, "expected one of " + ", ".join(choices))
            return default
        return value

    def secret_file(self, name: str) -> str:
        """The contents of the file ``name`` points at (one trailing newline dropped); a
        problem names the file, never what is in it."""
        raw = self.text(name)
        if not raw:
            return ""
        try:
            return Path(raw).read_text().removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            self._bad(name, raw, f"cannot read it ({type(exc).__name__})")
            return ""

    def flag(self, name: str, default: bool | None) -> bool | None:
        raw = self._raw(name)
        if not raw:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        self._bad(name, raw, "expected 1 or 0 (also true/false, yes/no, on/off)")
        return default

    def broker(self, name: str) -> str | None:
        raw = self._raw(name)
        if not raw:
            return None
        addresses = raw.removeprefix("kafka://").replace(";", ",").split(",")
        for address in addresses:
            host, _, port = address.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                self._bad(name, raw, "expected kafka://host:port[,host:port...]")
                return None
        return raw

    def file(self, name: str) -> None:
        raw = self.text(name)
        if raw and not Path(raw).is_file():
            self._bad(name, raw, "no such file")

    def url(self, name: str) -> str | None:
        raw = self._raw(name)
        if not raw:
            return None
        scheme, _, rest = raw.partition("://")
        if scheme.lower() not in ("http", "https") or not rest.strip("/"):
            self._bad(name, raw, "expected an http:// or https:// URL")
            return None
        return raw
