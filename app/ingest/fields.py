"""Every field the ingest API accepts, described once: name, kind, limits, pattern and doc.

The track validators (:mod:`app.ingest.validate`, and through them the v2 and browser endpoints),
the CSV importer (:mod:`app.imports.csv_events`) and the OpenAPI document (:mod:`app.api.openapi`)
all read these descriptions, so a limit or a pattern changed here changes all three together.

``kind`` says how a value is checked and documented; the kinds are:

* ``identifier`` – a person key: non-blank text, at most ``max_bytes`` of UTF-8, no control
  characters, never trimmed (changing a key would split one person's history in two);
* ``name`` – non-blank text, at most ``max_bytes``, trimmed;
* ``choice`` – one of ``choices`` (the first is the default);
* ``ulid`` – a ULID, made canonical (upper case);
* ``timestamp`` – Unix seconds (int, or a digit string as form bodies carry), not negative, not
  milliseconds, at most :data:`MAX_FUTURE_SECONDS` ahead;
* ``data`` – an object of at most ``max_bytes`` as compact JSON, with :data:`EMAIL_FIELDS`;
* ``email`` – ``a@example.com`` or ``Name <a@example.com>`` (:data:`EMAIL_RE`);
* ``flag`` – true/false (or their text);
* ``attribute_name`` / ``attribute_value`` – one identify attribute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from app.core.items import IDENTIFIER_KINDS
from app.model import EVENT_TYPES, MAX_IDENTIFIER_BYTES, MAX_NAME_BYTES

Kind = Literal["identifier", "name", "choice", "ulid", "timestamp", "data", "email", "flag",
               "attribute_name", "attribute_value"]

# --- limits (the ones Customer.io publishes for its track API) -------------------------------------

#: The name and identifier limits (MAX_NAME_BYTES, MAX_IDENTIFIER_BYTES) are app.model's: the worker
#: checks a producer's own records with them too.
MAX_DATA_BYTES = 100_000
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1_000
MAX_ATTRIBUTES = 300
MAX_FUTURE_SECONDS = 86_400
# Unix seconds reach 10**11 only in the year 5138, while "now" in milliseconds is ~1.7 * 10**12:
# anything at or above the threshold is a sender that forgot to divide by 1000.
MILLISECONDS_THRESHOLD = 10**11
#: Nesting allowed in event data and attribute values. Deeper documents are refused because the
#: records that carry them add levels of their own, and orjson stops at 254.
MAX_DEPTH = 32

# --- patterns: each written once, compiled for the checks and quoted in the OpenAPI document ------

#: Control characters (C0 and DEL), as a regex character-class body. Refused in identifiers: ids
#: are keys, joined with separators such as NUL and \x1f inside eventide's tables, and shown in
#: headers and CSV files. Refused in an email's display name: a CR/LF in a mail header would let a
#: sender inject extra headers.
_CONTROL = r"\x00-\x1f\x7f"
CONTROL_CHARACTERS = re.compile(f"[{_CONTROL}]")

_ADDRESS = r"[^\s@<>]+@[^\s@<>.]+(?:\.[^\s@<>.]+)+"
_EMAIL = rf"{_ADDRESS}|[^<>{_CONTROL}]*<{_ADDRESS}>"
#: Checks use ``fullmatch`` (``$`` would also match before a trailing newline).
EMAIL_RE = re.compile(_EMAIL)
EMAIL_PATTERN = f"^(?:{_EMAIL})$"

#: What ``ULID.from_str`` accepts: 26 Crockford base32 characters, any case, the first at most 7
#: (128 bits).
ULID_PATTERN = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"
DIGITS_PATTERN = "^[0-9]+$"
NON_BLANK_PATTERN = r"\S"
#: Not blank, and no control characters: the rule for keys (identifiers, segment ids).
KEY_PATTERN = rf"^(?=[\s\S]*\S)[^{_CONTROL}]*$"


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a request body (or a path parameter, or a CSV column's value).

    ``name`` is the key in the body and the field errors name; ``required`` means absent (or
    ``null``) is an error rather than a default; ``pattern`` is the JSON-Schema regex that states
    the rule the check enforces.
    """

    name: str
    kind: Kind
    doc: str = ""
    max_bytes: int | None = None
    pattern: str | None = None
    required: bool = False
    choices: tuple[str, ...] = ()

    @property
    def limit(self) -> int:
        """``max_bytes``, for the kinds that always have one."""
        if self.max_bytes is None:
            raise TypeError(f"field {self.name} ({self.kind}) has no byte limit")
        return self.max_bytes


def identifier(name: str, doc: str, *, required: bool = True) -> Field:
    return Field(name, "identifier", doc, MAX_IDENTIFIER_BYTES, KEY_PATTERN, required)


# --- people -------------------------------------------------------------------------------------

CUSTOMER_ID = identifier("customer_id", "A person identifier (used as a key: never trimmed)")
ANONYMOUS_ID = identifier("anonymous_id", "The anonymous id")
#: The identify body's anonymous_id: optional (it links that visitor's activity when present).
LINKED_ANONYMOUS_ID = identifier("anonymous_id", ANONYMOUS_ID.doc, required=False)
#: The ways a request may name a person (``{"email": ...}``), as the worker resolves them; an
#: event may also name an anonymous visitor by ``anonymous_id``.
PERSON_IDENTIFIER_KINDS = IDENTIFIER_KINDS

# --- events -------------------------------------------------------------------------------------

NAME = Field("name", "name", "The event name (trimmed)", MAX_NAME_BYTES, NON_BLANK_PATTERN,
             required=True)
EVENT_TYPE = Field("type", "choice", "Default: event.", choices=EVENT_TYPES)
EVENT_ID = Field("id", "ulid", "A ULID (26 Crockford base32 characters, any case). Events are "
                 "deduplicated by id; omitted, the server mints one.", pattern=ULID_PATTERN)
TIMESTAMP = Field("timestamp", "timestamp", (
    "Event time in Unix seconds: an integer literal (1.0 is refused), or (as form bodies carry "
    "only text) a digit string. Refused when negative, at or above "
    f"{MILLISECONDS_THRESHOLD} (milliseconds), or more than {MAX_FUTURE_SECONDS} seconds in the "
    "future; the maximum stated here is the time this document was made. Default: now."),
    pattern=DIGITS_PATTERN)
EMAIL_DOC = "An email address: a@example.com or Name <a@example.com>."
#: Keys of event data that override a message's addresses, so must be addresses themselves.
EMAIL_FIELDS = tuple(Field(key, "email", EMAIL_DOC, pattern=EMAIL_PATTERN)
                     for key in ("recipient", "from_address", "reply_to"))
DATA = Field("data", "data", (
    f"Free-form event data. At most {MAX_DATA_BYTES} bytes as compact JSON. "
    "recipient, from_address and reply_to, when present, must be email addresses."),
    MAX_DATA_BYTES)

#: A browser page view's URL: it becomes the event's name, and is checked as one.
PAGE_URL = Field("url", "name", "The page's URL (the event's name)", MAX_NAME_BYTES,
                 NON_BLANK_PATTERN, required=True)

#: An event body's own fields, in the order their errors are reported (the person comes first).
EVENT_FIELDS = (NAME, EVENT_TYPE, EVENT_ID, TIMESTAMP, DATA)

# --- identify -----------------------------------------------------------------------------------

UPDATE = Field("_update", "flag", (
    "true: only update an existing person. Accepted either way; the worker that processes it "
    "drops it, in log order, when the person does not exist then (it never creates anyone). Form "
    "bodies send the text true/false."))
#: The identify body's reserved keys, in error order; every other key is an attribute.
IDENTIFY_FIELDS = (LINKED_ANONYMOUS_ID, Field("_timestamp", "timestamp", TIMESTAMP.doc,
                                              pattern=DIGITS_PATTERN), UPDATE)
ATTRIBUTE_NAME = Field("name", "attribute_name", "An attribute name", MAX_ATTRIBUTE_NAME_BYTES,
                       NON_BLANK_PATTERN)
ATTRIBUTE_VALUE = Field("value", "attribute_value", (
    f"An attribute value: at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes (a string counts its text, "
    "anything else its compact JSON)."), MAX_ATTRIBUTE_VALUE_BYTES)


# --- CSV import ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """A reserved column of a Customer.io CSV event file, and the API field its cells fill."""

    header: str
    field: Field


CSV_NAME = Column("_cio_name", NAME)
CSV_CUSTOMER = Column("_cio_customer_id", CUSTOMER_ID)
CSV_TIMESTAMP = Column("_cio_timestamp", TIMESTAMP)
CSV_ID = Column("_cio_id", EVENT_ID)
#: In header order of the documented format; every other column is one key of the event's data.
CSV_COLUMNS = (CSV_NAME, CSV_CUSTOMER, CSV_TIMESTAMP, CSV_ID)

# --- track API v2 entities ----------------------------------------------------------------------

#: One ``/api/v2/entity`` body, or one entity of a batch, as compact JSON.
MAX_ENTITY_BYTES = 32 * 1024
#: One ``/api/v2/batch`` body.
MAX_BATCH_BYTES = 500 * 1024
#: What a v2 entity may do.
ENTITY_ACTIONS = ("identify", "event", "page", "screen", "merge", "delete")
