"""Sign in and sign out (the only console routes that do not require a viewer)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from app.api.context import runtime
from app.console import auth
from app.console.guard import form_of, sign_outs_known
from app.console.respond import error_page, login_page, redirect
from app.producer import BrokerUnavailable, OutRecord
from app.sessions import revocation_record

log = logging.getLogger(__name__)


async def root(request: web.Request) -> web.Response:
    return redirect("/console/")


async def login_form(request: web.Request) -> web.Response:
    rt = runtime(request)
    next_path = auth.safe_next(request.query.get("next"))
    if await sign_outs_known(rt, request) and \
            auth.viewer_of(request, rt.settings, rt.clock.now(), rt.revoked) is not None:
        return redirect(next_path)
    return login_page(next_path=next_path)


async def login(request: web.Request) -> web.Response:
    rt = runtime(request)
    if auth.cross_site(request):
        return error_page(403, "Cross-site requests are refused.")
    form = await form_of(request)
    next_path = auth.safe_next(form.get("next"))
    given = form.get("app_key")
    if not isinstance(given, str) or not auth.keys_equal(given, rt.settings.app_key):
        await asyncio.sleep(0.25)  # a little friction for guessing
        return login_page(next_path=next_path, error="That is not this workspace's app key.",
                          status=401)
    response = redirect(next_path)
    auth.set_session(response, rt.settings, rt.clock.now(), request)
    return response


async def logout(request: web.Request) -> web.Response:
    """End the session on every worker: its revocation is acknowledged by the broker (acks=all)
    and applied here before the answer; the others refuse the cookie as soon as they have read
    it (app/sessions.py)."""
    rt = runtime(request)
    if auth.cross_site(request):
        return error_page(403, "Cross-site requests are refused.")
    session = auth.cookie_session(request, rt.settings, rt.clock.now())
    if session is not None and not rt.revoked.is_revoked(session.session_id):
        key, value = revocation_record(session.session_id, session.expiry)
        record = OutRecord(rt.topics.session_revocations.name, 0, key, value)
        try:
            offset = await rt.producer.send_one(record)
            if rt.batcher.durable is not None:  # embedded: on disk in the input log too
                await rt.batcher.durable([record], [offset])
        except BrokerUnavailable as exc:
            log.error("sign-out not published: %s", exc)
            return error_page(503, "Not signed out: the sign-out could not be recorded for "
                                   "every worker (the broker did not acknowledge it). Try again.")
        rt.revoked.add(session.session_id, session.expiry)
    response = redirect("/console/login")
    auth.clear_session(response, rt.settings, request)
    return response
