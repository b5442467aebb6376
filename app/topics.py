"""The one registry of topics and tables: names, keys, partitions, retention.

Every hop is a topic keyed by the key of the table that consumes it (DATAFLOW rule 1):

    raw.events     key: customer identifier as sent   ─┐ process_people's customer router ─▶
    raw.identifies (read only, earlier versions)        │   person.events, or the person stage
    identity.commands key: identifier                 ─┘   in place for a customer's own id
                                                            (aliases: identifier → person;
                                                            alias updates, merge resolution)
    raw.anonymous  key: anonymous id                  ─┐ route_anonymous ─▶ anonymous_history,
    anonymous.links key: anonymous id                 ─┘   or person.events once linked
    person.events  key: canonical person id              process_people ─▶ dedup, history, profiles,
                                                                           memberships, timers
    segments.definitions  key: segment id (all records)  apply_definitions ─▶ person.events (all)
    segments.changes      key: person id                 every enter/exit, deterministic change_id
    segments.membership   key: segment_id:person_id      current membership (compacted)
    deadletter     key: origin key                       (records no agent could process)
    console.sessions.revoked  key: session id (compacted)  signed-out console sessions, followed
                                                          by every worker (app/sessions.py)

Every operation of a customer (event, identify, merge, delete) is written to ``raw.events``, so one
partition of the input log orders them; ``raw.identifies`` is read for producers of earlier
versions. Raw topics (and segment definitions) are inputs and the source of truth for replay, so they keep
everything (``retention.ms=-1``) and are named ``<prefix>.raw.*``. Everything derived from them —
the internal hops, the output streams and the changelogs — is named ``<prefix>.<state version>.*``,
so a replay into a fresh version never mixes with the live one.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.settings import DAY_S, Settings
from tables.unit import TableSpec


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    #: What the record key is, for humans and for the registry's consistency check.
    key: str
    compacted: bool = False
    #: Records older than this are deleted (besides compaction); None keeps every age.
    retention_ms: int | None = None

    def config(self, replication_factor: int = 1,
               min_insync_replicas: int | None = None) -> dict[str, str]:
        """Topic configs at creation. Replicated topics also get ``min.insync.replicas``
        (default: replication factor - 1), so an ``acks=all`` write survives a broker loss
        only once that many replicas have it."""
        config = {"cleanup.policy": "compact" if self.compacted else "delete",
                  "retention.ms": "-1"}
        if self.retention_ms is not None:
            config.update({"cleanup.policy": "compact,delete" if self.compacted else "delete",
                           "retention.ms": str(self.retention_ms)})
        if replication_factor > 1:
            isr = min_insync_replicas or replication_factor - 1
            if not 1 <= isr <= replication_factor:
                raise ValueError(f"min.insync.replicas {isr} must be between 1 and the "
                                 f"replication factor {replication_factor}")
            config["min.insync.replicas"] = str(isr)
        return config


@dataclass(frozen=True)
class Topics:
    raw_events: TopicSpec
    raw_identifies: TopicSpec
    raw_anonymous: TopicSpec
    person_events: TopicSpec
    identity_commands: TopicSpec
    anonymous_links: TopicSpec
    campaign_triggers: TopicSpec
    segment_definitions: TopicSpec
    segment_changes: TopicSpec
    segment_membership: TopicSpec
    deadletter: TopicSpec
    session_revocations: TopicSpec
    tables: tuple[TableSpec, ...]

    @property
    def raw(self) -> tuple[TopicSpec, ...]:
        return (self.raw_events, self.raw_identifies, self.raw_anonymous)

    def all(self) -> list[TopicSpec]:
        partitions = self.person_events.partitions
        changelogs = [TopicSpec(name, partitions, "<table>\\x1f<table key>", compacted=True)
                      for name in sorted({t.changelog_topic for t in self.tables})]
        return [*self.raw, self.person_events, self.identity_commands, self.anonymous_links,
                self.campaign_triggers, self.segment_definitions, self.segment_changes,
                self.segment_membership, self.deadletter, self.session_revocations,
                *changelogs]

    def is_compacted(self, topic: str) -> bool:
        """Whether ``topic`` (one of these) is compacted: a jump in its offsets is compaction."""
        return any(spec.compacted for spec in self.all() if spec.name == topic)

    def groups(self) -> dict[str, str]:
        """Topic → the topic whose partitions it shares with tables (co-partitioned inputs)."""
        return {self.raw_identifies.name: self.raw_events.name,
                self.identity_commands.name: self.raw_events.name,
                self.anonymous_links.name: self.raw_anonymous.name}

    def table(self, name: str) -> TableSpec:
        return next(t for t in self.tables if t.name == name)


# Table names, used by agents and readers alike.
# A person's events and dedup ids are one key each (app/person_store.py has the key layout).
DEDUP = "dedup"                      # "<person>␟<event id>" → [expires ms, partition, offset, index]
HISTORY = "history"                  # "<person>␟<timestamp>␟<event id>" → activity
HISTORY_BY_NAME = "history_by_name"  # "<person>␟<name>␟<timestamp>␟<event id>" → activity;
#                                      a local index of history, not in the changelog
ACTIVITY_LOG = "activity_log"        # "a␟<processed_at>␟<person>␟<event id>" and
#                                      "n␟<name>␟<processed_at>␟<person>␟<event id>" →
#                                      [timestamp, name, type]; a local index of history
HISTORY_SIZE = "history_size"        # person id → number of stored activities
PROFILES = "profiles"                # person id → profile
ANONYMOUS_HISTORY = "anonymous_history"  # anonymous id → {"events": [...], "seen": {...}}
ALIASES = "aliases"                  # "<kind>:<identifier>" → person id, on the identifier's partition
ANONYMOUS_LINKS = "anonymous_links"  # anonymous id → person id it was identified as
MEMBERSHIP = "membership"            # person id → {"in": {segment: since}, "due": {segment: due}, "n": {...}}
TIMERS = "timers"                    # "<due:012d>:<person>" → 1, the per-partition due-time index
SEGMENT_MEMBERS = "segment_members"  # "<segment>\x00<person>" → since, for membership listing
SEGMENT_STATE = "segment_state"      # segment id → {"version", "members"} active in this partition
EVENT_NAMES = "event_names"          # event name → {"count", "last_seen"} in this partition


#: The people tables' key layout: 1 was a value per person (the whole history, every dedup id);
#: 2 is a key per event (app/person_store.py).
PEOPLE_LAYOUT = 2


def people_changelog(version: str, layout: int = PEOPLE_LAYOUT) -> str:
    """The people tables' changelog topic of a state version (``<prefix>.<state version>``)."""
    return f"{version}.changelog.people" + ("" if layout == 1 else f".l{layout}")


def build_topics(settings: Settings) -> Topics:
    prefix, n = settings.topic_prefix, settings.partitions
    version = f"{prefix}.{settings.state_version}"

    def topic(name: str, key: str, compacted: bool = False) -> TopicSpec:
        return TopicSpec(f"{prefix}.{name}", n, key, compacted)

    def derived(name: str, key: str, compacted: bool = False) -> TopicSpec:
        return TopicSpec(f"{version}.{name}", n, key, compacted)

    person_events = derived("person.events", "canonical person id")
    raw_anonymous = topic("raw.anonymous", "anonymous id")
    raw_events = topic("raw.events", "customer identifier as sent")

    # One changelog per table group (the tables that follow one source topic), so the writes of
    # one unit of work are one ordered run that readers apply whole (tables/changelog.py). The
    # people tables' name carries their key layout: a new layout is a new changelog, migrated
    # from the old one at start (app/ops/migrate.py), never mixed with it.
    changelog_of = {person_events.name: people_changelog(version),
                    raw_events.name: f"{version}.changelog.customers",
                    raw_anonymous.name: f"{version}.changelog.anonymous"}

    def table(name: str, source: TopicSpec) -> TableSpec:
        return TableSpec(name, source.name, changelog_of[source.name])

    return Topics(
        raw_events=raw_events,
        raw_identifies=topic("raw.identifies", "customer identifier as sent"),
        raw_anonymous=raw_anonymous,
        person_events=person_events,
        identity_commands=derived("identity.commands", "identifier"),
        anonymous_links=derived("anonymous.links", "anonymous id"),
        campaign_triggers=derived("campaigns.triggers", "person id"),
        # Every record kept, not compacted: a replay activates each edit of a segment where the
        # live run did (app.core.activation.recorded_by), so it needs the versions edited over.
        segment_definitions=TopicSpec(f"{prefix}.segments.definitions", 1, "segment id"),
        segment_changes=derived("segments.changes", "person id"),
        segment_membership=derived("segments.membership", "segment_id:person_id",
                                   compacted=True),
        deadletter=derived("deadletter", "origin record key"),
        # Not versioned: sessions outlive a replay. Revocations last as long as a session at
        # most (12 h): a day's retention keeps every one that still matters.
        session_revocations=TopicSpec(f"{prefix}.console.sessions.revoked", 1, "session id",
                                      compacted=True, retention_ms=DAY_S * 1000),
        tables=(
            table(DEDUP, person_events),
            table(HISTORY, person_events),
            table(HISTORY_BY_NAME, person_events),
            table(ACTIVITY_LOG, person_events),
            table(HISTORY_SIZE, person_events),
            table(PROFILES, person_events),
            table(MEMBERSHIP, person_events),
            table(TIMERS, person_events),
            table(SEGMENT_MEMBERS, person_events),
            table(SEGMENT_STATE, person_events),
            table(EVENT_NAMES, person_events),
            table(ANONYMOUS_HISTORY, raw_anonymous),
            table(ANONYMOUS_LINKS, raw_anonymous),
            table(ALIASES, raw_events),
        ),
    )
