"""The crash-schedule scenario, shared by ``tests/chaos/test_crash_schedule.py`` (CI size) and
``bench/chaos.py`` (a million events). Its parts: :mod:`.workload`, :mod:`.oracle`,
:mod:`.fleet`, and :mod:`.scenario`, the whole run.

1. **Workload** (:func:`generate`): a seeded, deterministic list of raw items — identified events,
   identifies, anonymous events, identifies that link an anonymous id, merges — with 10% exact
   resends (same id, same key) of earlier items. Built so the final state does not depend on the
   order the pipeline happens to process things in:

   * merges never chain: a secondary is merged once, into a person who is never a secondary;
   * within a merge group (a primary and its secondaries) each shared attribute (``plan``,
     ``city``) is written by one member only, so "primary wins" never has to decide; every other
     attribute a member writes is its own (``n_<person>``); ``email`` only for ungrouped people;
   * attribute writes carry no ``_timestamp`` and every item has its own ``received_at``, so the
     latest write (by ``received_at``) wins whatever the arrival order;
   * every secondary's first identify is produced (and acknowledged) a few chunks before its merge,
     on the same raw partition, so the merge never finds an empty secondary;
   * each linked anonymous id is linked by exactly one identify; 10% are never linked;
   * every event time is at most three days before its accept time, which is in the past: nothing
     falls out of the 30-day anonymous window, and at the final time every event counts.

2. **Oracle** (:func:`oracle`): the expected final state computed from the items alone with the
   product's pure functions: survivors, each survivor's event ids, attributes, anonymous ids and
   segment membership (:func:`app.segments.evaluate.is_member`).

3. **Kill schedule** (:func:`run_schedule`), after faust's ``tests/stress/killer.py``: SIGTERM at
   random intervals (worker restarted after each); then a second worker joins the group for a while
   (rebalances, with one more SIGTERM while both are in), then leaves; then a burst of SIGKILLs
   0.1–1 s apart, each followed by an immediate restart. Phases are tied to production progress, so
   the kills land mid-stream whatever the size; the last quarter of the items is held back until
   the burst and then written at full speed, so the first SIGKILL hits a busy pipeline.

4. **Reconciliation** (:func:`compare`, :func:`check_changes`): the read API of the one surviving
   worker (owning every partition) against the oracle — histories, profiles and memberships exact,
   no event lost or doubled — and ``segments.changes``: once repeats of a ``change_id`` are dropped,
   entered/exited strictly alternate per (person, segment), starting with entered, ending in the
   expected membership. Dead letters must be empty.
"""
