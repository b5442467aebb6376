"""One frozen settings object, read from the environment once (flags may override fields)."""

from __future__ import annotations

import dataclasses
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from app.env_reader import EnvReader

DAY_S = 86_400

#: EVENTIDE_LOG_LEVEL's values (case-insensitive).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: EVENTIDE_KAFKA_SECURITY_PROTOCOL's and EVENTIDE_KAFKA_SASL_MECHANISM's values.
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SettingsError(ValueError):
    """Invalid settings: one line per bad variable, all of them (exit status 2)."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class StartupError(RuntimeError):
    """A start that cannot go on, for a reason one line can say (no traceback): the broker is
    unreachable, or refuses what the settings ask of it."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Settings:
    #: ``kafka://host:port[,host:port]`` of an existing Kafka; ``None`` starts the embedded broker.
    broker: str | None = None
    embedded_broker_port: int = 9092
    #: ``tansu`` (the embedded broker's quirks handled) or ``kafka`` (Kafka defaults, idempotent
    #: producer). Unset: ``tansu`` when embedded, else ``kafka``.
    broker_flavor: str | None = None
    #: Ask the broker for an idempotent producer (no duplicates on retries). ``None``: yes for
    #: ``kafka``, no for ``tansu``. Some managed services refuse it (the worker then stops with
    #: one line saying so): EVENTIDE_IDEMPOTENT_PRODUCER=0 turns it off.
    idempotent_producer: bool | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 6066
    #: A socket already bound and listening on the HTTP port, handed over by the process that
    #: started this one (``eventide up`` and ``eventide replay`` do), so the port is never free
    #: between the two; ``None``: bind ``http_host:http_port`` (:mod:`app.listen`).
    http_fd: int | None = None
    data_dir: Path = Path(".eventide")
    #: PEM certificate and key: serve HTTPS instead of HTTP (clients such as Customer.io's
    #: official libraries only speak HTTPS).
    tls_cert: str | None = None
    #: How other workers reach this one; default: http(s)://EVENTIDE_HTTP_HOST:PORT.
    advertised_http_url: str | None = None
    tls_key: str | None = None
    #: Where people reach eventide (e.g. https://events.example.com behind a TLS proxy): an https
    #: URL makes the console's session cookie Secure.
    public_url: str | None = None
    #: Proxies (addresses) whose X-Forwarded-Proto is believed.
    trusted_proxies: tuple[str, ...] = ()
    #: Signs requests one worker forwards to another (default: derived from the app key).
    cluster_secret: str = field(default="", repr=False)
    #: CA file to verify peers' HTTPS certificates (default: EVENTIDE_TLS_CERT, else the system's).
    peer_ca: str | None = None
    site_id: str = ""
    # Secrets are left out of repr(settings), so a logged settings object never shows them.
    api_key: str = field(default="", repr=False)
    app_key: str = field(default="", repr=False)
    #: What the ``{id}`` path segment of the track API means: ``id`` or ``email``.
    identify_by: str = "id"
    #: The state version: derived topics, changelogs, the consumer group and the local state are
    #: namespaced by it, so a replay can rebuild everything into a fresh version beside the live one.
    state_version: str = "v1"
    #: Prefix of every topic name, so tests can use fresh topics on one broker.
    topic_prefix: str = "eventide"
    partitions: int = 8
    replication_factor: int = 1
    #: ``min.insync.replicas`` of topics created with a replication factor above 1 (with
    #: ``acks=all`` a write then needs this many replicas); 0: replication factor - 1.
    min_insync_replicas: int = 0
    #: Dedup horizon, judged by the ULID's own timestamp (Customer.io does not state one; 30 days
    #: covers every retry policy we know of).
    dedup_horizon_s: int = 30 * DAY_S
    #: How long stored events are kept, by event time; 0 keeps every age (the count cap still
    #: bounds it). Back-dated imports are common, and segments may look back years.
    history_retention_s: int = 0
    #: At most this many stored events per person (oldest dropped first).
    history_max_events: int = 5_000
    #: Anonymous activity is kept this long waiting for an identify.
    anonymous_horizon_s: int = 30 * DAY_S
    max_body_bytes: int = 1024 * 1024
    #: How long the HTTP tier waits to coalesce concurrent requests into one record.
    ingest_linger_ms: int = 2
    ingest_max_batch: int = 500
    #: Records per processing batch (faust ``take``); records hold up to 500 items each.
    batch_max: int = 40
    batch_within_s: float = 0.01
    #: At most this many items per unit of work (this bound never splits a record): bounds a
    #: unit's memory and how long it holds the event loop, whatever the backlog. (2,000 and
    #: 1,000 drain at the same rate; with 1,000 segments, 1,000 keeps a worker's peak RSS under
    #: 400 MB.)
    unit_max_items: int = 1_000
    #: A unit takes no further item once it holds this many output records (the rest of its
    #: records, from that item on, make the next unit): an identify can change hundreds of
    #: segments, and 1,000 of them made units of ~93,000 records, all held until acknowledged.
    unit_max_outputs: int = 10_000
    #: Memory (approximate) for the values a unit reads per person (profile, membership, history
    #: size) and per event name and segment, kept decoded and written through as units commit
    #: (``tables.value_cache``): a returning person costs no reads of them. 0: none.
    state_cache_mb: int = 16
    #: Standby copies: with 1 or more, every worker keeps warm copies of the partitions it does
    #: not own (tailing their changelogs), so failover only catches up the last few records.
    standby_replicas: int = 0
    #: Embedded mode: the input log (``app/ops/input_log.py``) of this instance. ``eventide up``'s
    #: own worker writes it; workers 2..N wait on the durable offsets it publishes there.
    input_log_dir: Path | None = None
    #: Disk the input log may use (0: no bound); past it, ingest answers 503.
    input_log_max_bytes: int = 0
    #: Embedded mode: answer only once accepted records are fsync'd to the input log. Turning it
    #: off is for measuring what the guarantee costs, not for use.
    ack_on_disk: bool = True
    #: How often time-driven segment changes are looked for (they land within this + a batch).
    tick_interval_s: float = 15.0
    #: How long an input accepted before a segment definition was written may take to reach
    #: raw.events: a partition with no input accepted since activates the definition only after
    #: it, so live and replayed runs evaluate those inputs without it (clock skew between hosts
    #: counts here too).
    definition_grace_s: float = 2.0
    #: The event loop of a worker and of the ingest tier (``app.event_loop``): ``uvloop`` or
    #: ``asyncio``.
    event_loop: str = "uvloop"
    log_level: str = "info"
    log_json: bool = False
    #: Whether the browser endpoint may identify people. Like Customer.io's snippet, an identify
    #: from a page (public site id) can set a person's attributes, email included, and link the
    #: browser's anonymous id; a workspace that cannot accept that turns it off.
    browser_identify: bool = True
    #: Failed authentications one address may make per minute before it gets 429s.
    auth_failures_per_minute: int = 30
    #: Origins (``https://shop.example.com``) whose pages may call the browser endpoints (CORS).
    cors_origins: tuple[str, ...] = ()
    #: How every Kafka client eventide makes (faust's, and each producer, consumer and admin
    #: client) connects to EVENTIDE_BROKER; ``app.kafka_clients`` turns these into client options.
    kafka_security_protocol: str = "PLAINTEXT"
    #: SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); unset with SASL: PLAIN.
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str = ""
    #: From EVENTIDE_KAFKA_SASL_PASSWORD or the file EVENTIDE_KAFKA_SASL_PASSWORD_FILE names.
    kafka_sasl_password: str = field(default="", repr=False)
    #: CA file the brokers' certificates are verified with (default: the system's CAs).
    kafka_ca_file: str | None = None
    #: Client certificate (PEM) and its key, for brokers that authenticate clients by TLS.
    kafka_cert_file: str | None = None
    kafka_key_file: str | None = None

    @property
    def revoke_wait_s(self) -> float:
        """How long a revoked worker waits for a unit still committing: within the rebalance."""
        return 10.0 if self.tansu else 60.0

    @property
    def kafka_sasl(self) -> bool:
        return self.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def kafka_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    def kafka_security_problems(self) -> list[str]:
        """Combinations of the Kafka security settings that cannot work, one line each (never
        naming the password)."""
        protocol = self.kafka_security_protocol
        problems = []
        said = f"with EVENTIDE_KAFKA_SECURITY_PROTOCOL={protocol}"
        if protocol != "PLAINTEXT" and self.embedded:
            problems.append(f"EVENTIDE_KAFKA_SECURITY_PROTOCOL={protocol}: needs EVENTIDE_BROKER "
                            "(the embedded broker speaks PLAINTEXT only)")
        if self.kafka_sasl:
            if not self.kafka_sasl_username:
                problems.append(f"EVENTIDE_KAFKA_SASL_USERNAME: required {said}")
            if not self.kafka_sasl_password:
                problems.append("EVENTIDE_KAFKA_SASL_PASSWORD (or EVENTIDE_KAFKA_SASL_PASSWORD_"
                                f"FILE): required {said}")
        else:
            problems += [f"{name}: used only with EVENTIDE_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"
                         f" or SASL_SSL (it is {protocol})" for name, value in (
                             ("EVENTIDE_KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                             ("EVENTIDE_KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                             ("EVENTIDE_KAFKA_SASL_PASSWORD", self.kafka_sasl_password))
                         if value]
        if not self.kafka_tls:
            problems += [f"{name}: used only with EVENTIDE_KAFKA_SECURITY_PROTOCOL=SSL or "
                         f"SASL_SSL (it is {protocol})" for name, value in (
                             ("EVENTIDE_KAFKA_CA_FILE", self.kafka_ca_file),
                             ("EVENTIDE_KAFKA_CERT_FILE", self.kafka_cert_file),
                             ("EVENTIDE_KAFKA_KEY_FILE", self.kafka_key_file)) if value]
        if self.kafka_key_file and not self.kafka_cert_file:
            problems.append("EVENTIDE_KAFKA_KEY_FILE: needs EVENTIDE_KAFKA_CERT_FILE (the client "
                            "certificate it is the key of)")
        return problems

    @property
    def embedded(self) -> bool:
        return self.broker is None

    @property
    def app_id(self) -> str:
        """The consumer group (faust app id) of this state version."""
        return f"{self.topic_prefix}-{self.state_version}"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / self.state_version

    @property
    def tansu(self) -> bool:
        return (self.broker_flavor or ("tansu" if self.embedded else "kafka")) == "tansu"

    @property
    def bootstrap_servers(self) -> str:
        if self.broker is None:
            return f"127.0.0.1:{self.embedded_broker_port}"
        return self.broker.removeprefix("kafka://").replace(";", ",")

    @property
    def broker_url(self) -> str:
        return "kafka://" + self.bootstrap_servers

    @property
    def advertised_url(self) -> str:
        """Where other workers reach this one (forwarded reads): EVENTIDE_ADVERTISED_URL."""
        return self.advertised_http_url or self.http_url

    @property
    def http_url(self) -> str:
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{self.http_host}:{self.http_port}"

    def replace(self, **changes: object) -> "Settings":
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def idempotent(self) -> bool:
        """Whether the producer asks the broker for idempotence (EVENTIDE_IDEMPOTENT_PRODUCER;
        default: on for Kafka, off for Tansu, which does not implement it)."""
        return (not self.tansu) if self.idempotent_producer is None else self.idempotent_producer

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read every ``EVENTIDE_*`` setting; raises :class:`SettingsError` naming every bad
        value at once (nothing is silently replaced by a default)."""
        read = EnvReader(os.environ if env is None else env)
        # Problems are listed in the order values are read: the password first, then the fields
        # in the order of the helpers below (keyword arguments are evaluated left to right).
        password = _sasl_password(read)
        settings = cls(**_service_fields(read), **_state_fields(read),
                       **_kafka_fields(read, password))
        # Read elsewhere (tuning knobs), checked here so a typo is named with the rest.
        read.integer("EVENTIDE_GC_YOUNG_THRESHOLD", 0, 1)
        read.integer("EVENTIDE_HEAP_TRIM_INTERVAL_MS", 0, 0)
        read.integer("EVENTIDE_IMPORT_MAX_BYTES", 0, 1)
        read.number("EVENTIDE_READ_YOUR_WRITES_TIMEOUT_S", 10.0)
        for name in ("EVENTIDE_TLS_CERT", "EVENTIDE_TLS_KEY", "EVENTIDE_PEER_CA",
                     "EVENTIDE_KAFKA_CA_FILE", "EVENTIDE_KAFKA_CERT_FILE",
                     "EVENTIDE_KAFKA_KEY_FILE"):
            read.file(name)
        read.problems.extend(settings.kafka_security_problems())
        if read.problems:
            raise SettingsError(read.problems)
        return settings

    def with_generated_credentials(self) -> "Settings":
        """Fill in any missing credential with a random one (printed by ``eventide up``)."""
        return self.replace(
            site_id=self.site_id or "site-" + secrets.token_hex(4),
            api_key=self.api_key or secrets.token_urlsafe(18),
            app_key=self.app_key or secrets.token_urlsafe(24),
        )


def _sasl_password(read: EnvReader) -> str:
    """EVENTIDE_KAFKA_SASL_PASSWORD, or the contents of EVENTIDE_KAFKA_SASL_PASSWORD_FILE."""
    password = read.text("EVENTIDE_KAFKA_SASL_PASSWORD")
    if password and read.text("EVENTIDE_KAFKA_SASL_PASSWORD_FILE"):
        read.problems.append("EVENTIDE_KAFKA_SASL_PASSWORD and EVENTIDE_KAFKA_SASL_PASSWORD_"
                             "FILE are both set: set one of them")
    return password or read.secret_file("EVENTIDE_KAFKA_SASL_PASSWORD_FILE")


def _optional(number: int) -> int | None:
    """A whole-number setting whose absence is ``-1`` in the reader (no such value is valid)."""
    return None if number < 0 else number


def _service_fields(read: EnvReader) -> dict[str, Any]:
    """Where the broker and the HTTP API are, TLS and peers, credentials."""
    get = read.text
    return dict(
        broker=read.broker("EVENTIDE_BROKER"),
        embedded_broker_port=read.integer("EVENTIDE_EMBEDDED_BROKER_PORT", 9092, 1, 65535),
        broker_flavor=read.choice("EVENTIDE_BROKER_FLAVOR", None, ("tansu", "kafka")),
        idempotent_producer=read.flag("EVENTIDE_IDEMPOTENT_PRODUCER", None),
        http_host=get("EVENTIDE_HTTP_HOST") or "127.0.0.1",
        http_port=read.integer("EVENTIDE_HTTP_PORT", 6066, 1, 65535),
        http_fd=_optional(read.integer("EVENTIDE_HTTP_FD", -1, 0)),
        data_dir=Path(get("EVENTIDE_DATA_DIR") or ".eventide"),
        tls_cert=get("EVENTIDE_TLS_CERT") or None,
        advertised_http_url=read.url("EVENTIDE_ADVERTISED_URL"),
        tls_key=get("EVENTIDE_TLS_KEY") or None,
        cluster_secret=get("EVENTIDE_CLUSTER_SECRET") or "",
        public_url=read.url("EVENTIDE_PUBLIC_URL"),
        trusted_proxies=tuple(p.strip() for p in
                              (get("EVENTIDE_TRUSTED_PROXIES") or "").split(",") if p.strip()),
        peer_ca=get("EVENTIDE_PEER_CA") or None,
        site_id=get("EVENTIDE_SITE_ID") or "",
        api_key=get("EVENTIDE_API_KEY") or "",
        app_key=get("EVENTIDE_APP_KEY") or "",
    )


def _state_fields(read: EnvReader) -> dict[str, Any]:
    """Topics and state, the input log, batching and timers, logging, browser clients."""
    get = read.text
    return dict(
        state_version=get("EVENTIDE_STATE_VERSION") or "v1",
        identify_by=read.choice("EVENTIDE_IDENTIFY_BY", "id", ("id", "email")),
        topic_prefix=get("EVENTIDE_TOPIC_PREFIX") or "eventide",
        partitions=read.integer("EVENTIDE_PARTITIONS", 8, 1),
        replication_factor=read.integer("EVENTIDE_REPLICATION_FACTOR", 1, 1),
        min_insync_replicas=read.integer("EVENTIDE_MIN_INSYNC_REPLICAS", 0, 0),
        dedup_horizon_s=read.integer("EVENTIDE_DEDUP_HORIZON_DAYS", 30, 1) * DAY_S,
        history_retention_s=read.integer("EVENTIDE_HISTORY_RETENTION_DAYS", 0, 0) * DAY_S,
        history_max_events=read.integer("EVENTIDE_HISTORY_MAX_EVENTS", 5_000, 1),
        standby_replicas=read.integer("EVENTIDE_STANDBY_REPLICAS", 0, 0),
        input_log_dir=Path(get("EVENTIDE_INPUT_LOG_DIR")) if get("EVENTIDE_INPUT_LOG_DIR")
        else None,
        input_log_max_bytes=read.integer("EVENTIDE_INPUT_LOG_MAX_BYTES", 0, 0),
        ack_on_disk=read.flag("EVENTIDE_ACK_ON_DISK", True),
        batch_max=read.integer("EVENTIDE_BATCH_MAX", 40, 1),
        unit_max_items=read.integer("EVENTIDE_UNIT_MAX_ITEMS", 1_000, 1),
        unit_max_outputs=read.integer("EVENTIDE_UNIT_MAX_OUTPUTS", 10_000, 1),
        state_cache_mb=read.integer("EVENTIDE_STATE_CACHE_MB", 16, 0),
        tick_interval_s=read.number("EVENTIDE_TICK_INTERVAL_S", 15.0),
        definition_grace_s=read.number("EVENTIDE_DEFINITION_GRACE_S", 2.0),
        event_loop=read.choice("EVENTIDE_EVENT_LOOP", "uvloop", ("uvloop", "asyncio")),
        log_level=read.choice("EVENTIDE_LOG_LEVEL", "info", LOG_LEVELS),
        log_json=read.choice("EVENTIDE_LOG_FORMAT", "human", ("human", "json")) == "json",
        auth_failures_per_minute=read.integer("EVENTIDE_AUTH_FAILURES_PER_MINUTE", 30, 1),
        browser_identify=read.flag("EVENTIDE_BROWSER_IDENTIFY", True),
        cors_origins=tuple(origin.strip().rstrip("/") for origin in
                           (get("EVENTIDE_CORS_ORIGINS") or "").split(",")
                           if origin.strip()),
    )


def _kafka_fields(read: EnvReader, password: str) -> dict[str, Any]:
    """How the Kafka clients connect and authenticate."""
    get = read.text
    return dict(
        kafka_security_protocol=read.choice(
            "EVENTIDE_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", KAFKA_PROTOCOLS,
            upper=True) or "PLAINTEXT",
        kafka_sasl_mechanism=read.choice("EVENTIDE_KAFKA_SASL_MECHANISM", None,
                                         SASL_MECHANISMS, upper=True),
        kafka_sasl_username=get("EVENTIDE_KAFKA_SASL_USERNAME").strip(),
        kafka_sasl_password=password,
        kafka_ca_file=get("EVENTIDE_KAFKA_CA_FILE") or None,
        kafka_cert_file=get("EVENTIDE_KAFKA_CERT_FILE") or None,
        kafka_key_file=get("EVENTIDE_KAFKA_KEY_FILE") or None,
    )
