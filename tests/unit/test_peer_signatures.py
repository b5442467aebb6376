"""app.api.peers: forwarded requests are signed with the cluster secret, not the caller's key."""

from __future__ import annotations

from app.api.peers import FORWARDED, SIGNATURE, cluster_secret, sign, verify
from app.settings import Settings

SETTINGS = Settings(app_key="app-key-1", site_id="s", api_key="k")
NOW = 1_700_000_000


def signed(method: str = "GET", path: str = "/api/v1/customers/5/activities",
           body: bytes = b"") -> str:
    headers = sign(SETTINGS, method, path, body, now_s=NOW)
    assert headers[FORWARDED] == "1"
    assert "app-key-1" not in str(headers), "the app key never travels"
    return headers[SIGNATURE]


def test_a_signature_verifies_for_exactly_the_request_it_signed() -> None:
    header = signed("POST", "/console/people/5/send?x=1", b"name=e")
    assert verify(SETTINGS, header, "POST", "/console/people/5/send?x=1", b"name=e", now_s=NOW)
    assert not verify(SETTINGS, header, "GET", "/console/people/5/send?x=1", b"name=e", now_s=NOW)
    assert not verify(SETTINGS, header, "POST", "/console/people/6/send?x=1", b"name=e",
                      now_s=NOW)
    assert not verify(SETTINGS, header, "POST", "/console/people/5/send?x=2", b"name=e",
                      now_s=NOW)
    assert not verify(SETTINGS, header, "POST", "/console/people/5/send?x=1", b"name=f",
                      now_s=NOW)


def test_a_signature_expires_and_a_forged_or_missing_one_fails() -> None:
    header = signed()
    path = "/api/v1/customers/5/activities"
    assert verify(SETTINGS, header, "GET", path, b"", now_s=NOW + 59)
    assert not verify(SETTINGS, header, "GET", path, b"", now_s=NOW + 61)
    assert not verify(SETTINGS, header, "GET", path, b"", now_s=NOW - 61)
    for forged in ("", "t=1", f"t={NOW},s=00", f"t={NOW},s=" + "0" * 64, "garbage"):
        assert not verify(SETTINGS, forged, "GET", path, b"", now_s=NOW)


def test_another_secret_does_not_verify() -> None:
    header = signed()
    other = Settings(app_key="another-app-key", site_id="s", api_key="k")
    assert not verify(other, header, "GET", "/api/v1/customers/5/activities", b"", now_s=NOW)
    explicit = Settings(app_key="app-key-1", cluster_secret="set-by-operator")
    assert cluster_secret(explicit) == b"set-by-operator"
    assert cluster_secret(SETTINGS) != SETTINGS.app_key.encode()
