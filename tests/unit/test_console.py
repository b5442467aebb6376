"""Console helpers without a worker: escaping, sparklines, sessions, redirects, feed positions."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request

from app.console import auth, html
from app.console.feed import format_positions, parse_positions
from app.sessions import RevokedSessions
from app.settings import Settings

SETTINGS = Settings(app_key="app-key", site_id="site", api_key="k")


def test_everything_from_data_is_escaped_once() -> None:
    nasty = '<script>alert("x")</script>&'
    assert html.esc(nasty) == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"
    assert html.esc(html.esc(nasty)) == html.esc(nasty)  # Html is not escaped again
    row = html.table("t", ["a", "b"], [[nasty, html.link("/console/x?a=1&b=2", nasty)]])
    assert "<script>" not in row and 'href="/console/x?a=1&amp;b=2"' in row
    assert html.path_segment("a/b c") == "a%2Fb%20c"


def test_times_read_as_utc_and_missing_ones_say_so() -> None:
    assert html.when(0) == '<time datetime="1970-01-01T00:00:00Z">1970-01-01 00:00:00 UTC</time>'
    assert html.when(None, empty="not yet") == "not yet"
    assert html.ago(100, 100 + 3 * 86_400) == "3 days ago"


def test_sparkline_describes_itself() -> None:
    svg = html.sparkline([0, 2, 5, 1], label="x per day", width=30, height=10)
    assert 'role="img"' in svg and "x per day: 8 in the last 4 days, at most 5 a day, 1 today" in svg
    assert svg.count(",") >= 4 and "<polyline" in svg
    flat = html.sparkline([0, 0, 0], label="none")
    assert "0 in the last 3 days" in flat


def test_session_tokens_expire_and_are_bound_to_the_app_key() -> None:
    revoked = RevokedSessions(now=lambda: 1001)
    token = auth.session_token(SETTINGS, now_s=1000)
    assert "app-key" not in token
    assert auth.token_valid(SETTINGS, token, 1001, revoked)
    assert not auth.token_valid(SETTINGS, token, 1000 + auth.SESSION_S + 1, revoked)
    assert not auth.token_valid(SETTINGS.replace(app_key="rotated"), token, 1001, revoked)
    expiry, session_id, mac = token.split(".")
    assert not auth.token_valid(SETTINGS, f"{int(expiry) + 1}.{session_id}.{mac}", 1001, revoked)
    other_id = session_id[:-1] + ("1" if session_id.endswith("0") else "0")
    assert not auth.token_valid(SETTINGS, f"{expiry}.{other_id}.{mac}", 1001, revoked)
    assert not auth.token_valid(SETTINGS, f"{expiry}.{mac}", 1001, revoked)  # earlier format
    assert not auth.token_valid(SETTINGS.replace(app_key=""), token, 1001, revoked)


def test_each_sign_in_is_a_session_of_its_own_that_sign_out_revokes() -> None:
    """Issue 14.9: the cookie of a signed-out session kept working for its 12 h."""
    revoked = RevokedSessions(now=lambda: 1001)
    first, second = (auth.session_token(SETTINGS, now_s=1000) for _ in range(2))
    session = auth.session_of(SETTINGS, first, 1001)
    assert session is not None and session.expiry == 1000 + auth.SESSION_S
    assert session.session_id != auth.session_of(SETTINGS, second, 1001).session_id
    revoked.add(session.session_id, session.expiry)
    assert not auth.token_valid(SETTINGS, first, 1001, revoked)
    assert auth.token_valid(SETTINGS, second, 1001, revoked)  # another sign-in stays in
    request = make_mocked_request("GET", "/console/", headers={"Cookie": f"{auth.COOKIE}={first}"})
    assert auth.viewer_of(request, SETTINGS, 1001, revoked) is None


def test_viewer_by_bearer_or_cookie_and_a_wrong_bearer_never_falls_back() -> None:
    token = auth.session_token(SETTINGS, now_s=1000)
    revoked = RevokedSessions()
    by_bearer = make_mocked_request("GET", "/console/", headers={
        "Authorization": "Bearer app-key"})
    assert auth.viewer_of(by_bearer, SETTINGS, 1001, revoked) == auth.Viewer(by_cookie=False)
    by_cookie = make_mocked_request("GET", "/console/", headers={
        "Cookie": f"{auth.COOKIE}={token}"})
    assert auth.viewer_of(by_cookie, SETTINGS, 1001, revoked) == auth.Viewer(by_cookie=True)
    both_wrong_bearer = make_mocked_request("GET", "/console/", headers={
        "Authorization": "Bearer nope", "Cookie": f"{auth.COOKIE}={token}"})
    assert auth.viewer_of(both_wrong_bearer, SETTINGS, 1001, revoked) is None


def test_cross_site_requests_are_recognised() -> None:
    def request(**headers: str):  # type: ignore[no-untyped-def]
        return make_mocked_request("POST", "/console/send",
                                   headers={"Host": "127.0.0.1:6066", **headers})
    assert not auth.cross_site(request())
    assert not auth.cross_site(request(Origin="http://127.0.0.1:6066"))
    assert auth.cross_site(request(Origin="http://evil.example"))
    assert auth.cross_site(request(Origin="null"))
    assert auth.cross_site(request(**{"Sec-Fetch-Site": "cross-site"}))


def test_sign_in_only_returns_to_console_paths() -> None:
    assert auth.safe_next("/console/people/5?tab=anonymous") == "/console/people/5?tab=anonymous"
    for bad in (None, "", "https://evil.example/", "//evil.example/console/", "/api/v1/x",
                "/console/\\evil", "/console/\r\nSet-Cookie: x"):
        assert auth.safe_next(bad) == "/console/"


def test_feed_positions_round_trip_and_ignore_junk() -> None:
    assert parse_positions(format_positions({0: 12, 3: 5}), 4) == {0: 12, 3: 5}
    assert parse_positions("0:1,9:4,x:y,2:-1,1:7", 4) == {0: 1, 1: 7}
    assert parse_positions(None, 4) == {} and parse_positions("1:2" * 3000, 4) == {}


def test_the_session_cookie_is_secure_whenever_the_browser_used_https() -> None:
    """Issue 14.9: Secure was set only when eventide itself terminated TLS."""
    from aiohttp import web

    def cookie_for(settings: Settings, headers: dict[str, str], remote: str) -> str:
        request = make_mocked_request("POST", "/console/login", headers=headers)
        request = request.clone(remote=remote)
        response = web.Response()
        auth.set_session(response, settings, 1_700_000_000, request)
        return response.cookies[auth.COOKIE].output()

    base = Settings(app_key="k")
    https = {"X-Forwarded-Proto": "https"}
    assert "Secure" not in cookie_for(base, {}, "10.0.0.9")
    assert "Secure" in cookie_for(base.replace(public_url="https://ev.example.com"), {},
                                  "10.0.0.9")
    proxied = base.replace(trusted_proxies=("10.0.0.9",))
    assert "Secure" in cookie_for(proxied, https, "10.0.0.9")
    assert "Secure" not in cookie_for(proxied, https, "10.0.0.66"), "only a trusted proxy"
    assert "Secure" not in cookie_for(base, https, "10.0.0.9")


def test_hostile_values_are_escaped_on_a_page() -> None:
    """Templates escape every value: one meant to close an attribute or open a script cannot."""
    from app.console import parts
    from app.console.respond import page

    hostile = '"onmouseover="alert(1)" x=\'<script>alert(2)</script>'
    response = page("segment", hostile, by_cookie=True, lookup_value=hostile, segment_id=hostile,
                    saved=True, summary={"state": hostile, "version": hostile},
                    heading=hostile, members_count="1", updated="", errors=[hostile],
                    invalid=True, text=hostile, segment_url="/console/segments/x",
                    members=[{"id": hostile, "href": hostile}], more=True,
                    feed=parts.feed_section(hostile))
    text = response.text or ""
    assert "<script>" not in text and '"onmouseover=' not in text and "'<" not in text
    assert 'data-confirm="Delete segment &#34;onmouseover=&#34;alert(1)&#34;' in text
    sent = parts.send_form(customer_id=hostile, name=hostile, data_text=hostile, errors=[hostile],
                           return_to=hostile, names=[hostile])
    assert "<script>" not in sent and '"onmouseover=' not in sent
