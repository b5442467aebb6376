"""The set of signed-out console sessions every worker keeps (issue 14.9): revocations hold
until the session's own expiry, then go, so the set stays bounded."""

from __future__ import annotations

from app.ops import replay
from app.sessions import SESSION_S, RevokedSessions, revocation_record
from app.settings import Settings
from app.topics import build_topics


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_revocation_holds_until_the_session_expires() -> None:
    clock = Clock()
    revoked = RevokedSessions(now=clock)
    revoked.add("a", int(clock.now) + 100)
    revoked.add("b", int(clock.now) + 200)
    assert revoked.is_revoked("a") and revoked.is_revoked("b") and not revoked.is_revoked("c")
    assert len(revoked) == 2
    clock.now += 100  # a's session has expired: its cookie is refused anyway
    assert not revoked.is_revoked("a") and revoked.is_revoked("b") and len(revoked) == 1
    revoked.add("old", int(clock.now) - 1)  # already expired: nothing to keep
    assert len(revoked) == 1
    revoked.add("b", int(clock.now) + 50)  # an earlier expiry never shortens a revocation
    clock.now += 60
    assert revoked.is_revoked("b")
    clock.now += 40
    assert len(revoked) == 0


def test_the_set_stays_bounded_by_the_sessions_signed_out_in_one_session_length() -> None:
    clock = Clock()
    revoked = RevokedSessions(now=clock)
    peak = 0
    for minute in range(4 * 24 * 60):  # four days, one sign-out a minute
        clock.now += 60
        signed_in = clock.now - (minute * 7919 % SESSION_S)  # sessions of every age
        revoked.add(f"s{minute}", int(signed_in) + SESSION_S)
        peak = max(peak, len(revoked))
    assert peak <= SESSION_S // 60 + 1
    assert len(revoked._queue) == len(revoked)  # nothing left behind in the expiry queue
    clock.now += SESSION_S
    assert len(revoked) == 0 and not revoked._queue


def test_applying_the_topic_tracks_its_offset_and_ignores_junk() -> None:
    clock = Clock()
    revoked = RevokedSessions(now=clock)
    key, value = revocation_record("abc", int(clock.now) + 10)
    assert (key, value) == (b"abc", b'{"expiry":%d}' % (int(clock.now) + 10))
    revoked.apply("abc", {"expiry": int(clock.now) + 10}, 4)
    revoked.apply("junk", {"expiry": "soon"}, 5)
    revoked.apply("gone", None, 6)
    assert revoked.is_revoked("abc") and len(revoked) == 1 and revoked.offset == 6
    revoked.add("local", int(clock.now) + 10)  # the signing-out worker, before the topic
    assert revoked.offset == 6, "a local add must not make a restarted follower skip records"


def test_the_revocations_topic_is_registered_bounded_and_kept_by_the_input_log() -> None:
    topics = build_topics(Settings(topic_prefix="p"))
    spec = topics.session_revocations
    assert spec.name == "p.console.sessions.revoked" and spec.partitions == 1
    assert spec in topics.all()
    config = spec.config()
    assert config["cleanup.policy"] == "compact,delete"
    assert int(config["retention.ms"]) >= SESSION_S * 1000  # a record outlives its session
    assert spec in replay.inputs(topics)  # survives a restart of the embedded broker
