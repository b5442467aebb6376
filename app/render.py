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
from liquid.exceptions import LiquidError, ResourceLimitError
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


#: Bounds on what one filter may take or make: a 429-byte template of four chained ``replace``
#: filters built a 622 MB string, and ``(1..10000000) | join`` held the worker 1.4 s.
MAX_FILTER_STRING = 1_000_000
MAX_FILTER_ITEMS = 100_000


class FilterLimitError(ResourceLimitError):
    """A filter's input or output is over its bound."""


def _size_error(what: str) -> FilterLimitError:
    # liquid places the error (template line) from the filter's token when it catches it.
    return FilterLimitError(f"{what}: over the template work limit ({MAX_FILTER_STRING:,} "
                            f"characters or {MAX_FILTER_ITEMS:,} items)", token=None)


def _check_size(value: Any, what: str) -> None:
    if isinstance(value, str):
        if len(value) > MAX_FILTER_STRING:
            raise _size_error(what)
    elif isinstance(value, (list, tuple, range, dict, set)) and len(value) > MAX_FILTER_ITEMS:
        raise _size_error(what)


def _bounded(name: str, fn: Any) -> Any:
    """``fn`` checked before it runs (its input and arguments, and for the replacing filters
    the size of what they would build) and after (its output)."""

    @functools.wraps(fn)
    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_size(value, f"{name} input")
        for arg in args:
            _check_size(arg, f"{name} argument")
        if name.startswith("replace") and isinstance(value, str) and len(args) >= 1:
            old, new = str(args[0]), str(args[1]) if len(args) > 1 else ""
            hits = (len(value) + 1) if not old else value.count(old)
            if name != "replace":
                hits = min(hits, 1)
            if len(value) + hits * max(0, len(new) - len(old)) > MAX_FILTER_STRING:
                raise _size_error(f"{name} result")
        result = fn(value, *args, **kwargs)
        _check_size(result, f"{name} result")
        return result

    return bounded


@functools.cache
def _environment(strict: bool) -> Environment:
    undefined: Type[Undefined] = StrictDefaultUndefined if strict else Undefined
    env = _LocatingEnvironment(undefined=undefined)
    env.add_filter("date", _date_utc)
    for name, fn in list(env.filters.items()):
        # ``default`` makes nothing bigger than its arguments, and strict mode recognises it by
        # identity (it is what may look at an undefined value).
        if name != "default":
            env.add_filter(name, _bounded(name, fn))
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
