"""Liquid rendering of message templates, the way Customer.io exposes people and events.

Templates see two variables:

``customer``
    the person's attributes (``{{customer.first_name | default: "there"}}``);
``event``
    the triggering event's *data* object, as in Customer.io (``{{event.total}}``,
    ``{{event.items[0].type}}``, ``{{event["sign up date"]}}``).

By default an undefined variable renders as an empty string, which is what Customer.io does.
``strict=True`` turns every undefined variable into a :class:`TemplateError`, for previews and
template linting; ``default:`` still supplies its fallback in strict mode, because a template
that says what to print when a value is missing has handled the missing value.

Every liquid failure (syntax, undefined in strict mode, unknown filter, bad filter argument) is
translated into :class:`TemplateError` carrying the 1-based template line, so callers handle one
exception type and never import liquid.

Parsed templates are cached in a bounded LRU keyed by source text, since one campaign renders the
same template for many people.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Optional, Type, Union

from liquid import BoundTemplate, Environment, StrictDefaultUndefined, Undefined
from liquid.builtin.filters.misc import date as _liquid_date
from liquid.exceptions import LiquidError
from liquid.filter import liquid_filter, with_environment
from liquid.token import TOKEN_EOF, Token

#: Distinct template sources kept parsed (per strictness).
TEMPLATE_CACHE_SIZE = 256


class TemplateError(Exception):
    """A template could not be parsed or rendered.

    ``message`` is liquid's short description; ``line`` is the 1-based line of the template where
    the problem is (``None`` only when liquid could not place it).
    """

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message, line)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


def render(
    template: str, *, customer: dict[str, Any], event: dict[str, Any], strict: bool = False
) -> str:
    """Render liquid ``template`` for ``customer`` (attributes) and ``event`` (event data).

    Raises :class:`TemplateError` on a syntax error, on any render-time liquid error and, when
    ``strict``, on a reference to an undefined variable.
    """
    bound = _parse(template, strict)
    try:
        return bound.render(customer=customer, event=event)
    except LiquidError as exc:
        raise _translate(exc, template) from exc


@functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def _parse(template: str, strict: bool) -> BoundTemplate:
    # Failed parses are not cached (lru_cache does not memoise exceptions); that is fine, a broken
    # template fails on the first recipient and is fixed before it is rendered at volume.
    try:
        return _environment(strict).from_string(template)
    except LiquidError as exc:
        raise _translate(exc, template) from exc


@functools.cache
def _environment(strict: bool) -> Environment:
    undefined: Type[Undefined] = StrictDefaultUndefined if strict else Undefined
    env = _LocatingEnvironment(undefined=undefined)
    env.add_filter("date", _date_utc)
    return env


class _LocatingEnvironment(Environment):
    """An environment whose errors keep a position in the template, with bounded work.

    Templates come from operators but run on the worker: loops and output are capped so one
    template cannot hold a thread forever (the caps raise a template error instead).

    liquid parses the inside of ``{{ }}`` and ``{% %}`` with a sub-stream whose end token has no
    source position, so e.g. ``{{ x | }}`` would report no line. When that happens, the enclosing
    statement's token (which the parser passes here) does have one; use it.
    """

    loop_iteration_limit = 100_000
    output_stream_limit = 1_000_000
    local_namespace_limit = 100_000

    def error(
        self,
        exc: Union[Type[LiquidError], LiquidError],
        msg: Optional[str] = None,
        token: Optional[Token] = None,
    ) -> None:
        if isinstance(exc, LiquidError) and _has_position(token) and not _has_position(exc.token):
            exc.token = token
        super().error(exc, msg, token)


def _has_position(token: Optional[Token]) -> bool:
    return token is not None and token.start_index >= 0 and bool(token.source)


@with_environment
@liquid_filter
def _date_utc(value: object, fmt: str, *, environment: Environment) -> str:
    """liquid's ``date`` filter, reading Unix timestamps as UTC.

    The stock filter uses the server's local zone for Unix timestamps, so the same template would
    print different dates on differently configured hosts. Event timestamps are UTC.
    """
    # Like liquid, print what cannot be read as a date unchanged; digit strings are measured
    # first because int() refuses more than 4,300 digits (liquid's own filter would crash).
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > 18:
            return value
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            value = dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return str(value)
    return str(_liquid_date(value, fmt, environment=environment))


def _translate(exc: LiquidError, template: str) -> TemplateError:
    message = str(exc.message) if exc.message is not None else type(exc).__name__
    context = exc.context()
    if context is not None:
        return TemplateError(message, context[0])
    if exc.token is not None and exc.token.kind == TOKEN_EOF:
        # An unclosed block ("expected tag endif") is only noticed when the template runs out, and
        # liquid's name for that token ("end of expression") misleads template authors.
        message = message.replace(f"found {TOKEN_EOF}", "found end of template")
        return TemplateError(message, max(1, len(template.splitlines())))
    return TemplateError(message, None)
