"""Drive schemathesis over every operation of the served OpenAPI document, against a live worker.

Blocking (requests + hypothesis): run it in a thread from async tests. Every operation gets a
positive pass (data the document calls valid), a negative pass (data it calls invalid) and, for
reads, a pass whose path parameters name seeded data so the 200 schemas are exercised too.
Failures are collected per operation and pass instead of stopping the run at the first one.
"""

from __future__ import annotations

import collections
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import hypothesis
import requests
from hypothesis import HealthCheck, Phase

from tests.fuzz.support import (credentials, error_shape_problem, known_bug,
                                register_serializers)
from tests.support.harness import Deployment


@dataclass
class FuzzReport:
    requests: int = 0
    skipped_known_bugs: collections.Counter = field(default_factory=collections.Counter)
    statuses: dict[str, collections.Counter] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"{self.requests} requests over {len(self.statuses)} operations in "
                 f"{self.seconds:.1f} s"]
        for label in sorted(self.statuses):
            counts = ", ".join(f"{code}x{n}" for code, n in sorted(self.statuses[label].items()))
            lines.append(f"  {label}: {counts}")
        if self.skipped_known_bugs:
            lines.append(f"  skipped (known bugs): {dict(self.skipped_known_bugs)}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _checks() -> list[Callable[..., Any]]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance,
                                                   response_headers_conformance,
                                                   response_schema_conformance,
                                                   status_code_conformance)
    return [not_a_server_error, status_code_conformance, content_type_conformance,
            response_headers_conformance, response_schema_conformance]


def run_fuzz(doc: dict[str, Any], deployment: Deployment, *, max_examples: int,
             seeded: dict[str, str], derandomize: bool = True, shrink: bool = False,
             seed: int | None = None) -> FuzzReport:
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.core.failures import FailureGroup

    register_serializers()
    schema = schemathesis.openapi.from_dict(doc)
    checks = _checks()
    report = FuzzReport()
    started = time.monotonic()
    session = requests.Session()
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    settings = hypothesis.settings(
        max_examples=max_examples, deadline=None, database=None,
        derandomize=derandomize and seed is None,
        suppress_health_check=list(HealthCheck), phases=phases, print_blob=False)
    site = {"site_id": deployment.settings.site_id}

    for result in schema.get_all_operations():
        operation = result.ok()
        method = operation.method.lower()
        raw = doc["paths"][operation.path][method]
        label = f"{method.upper()} {operation.path}"
        auth = credentials(doc, raw, deployment)
        statuses = report.statuses.setdefault(label, collections.Counter())
        path_names = {p.name for p in operation.path_parameters}
        fixed = {k: v for k, v in site.items() if k in path_names}
        passes: list[tuple[str, Any, dict[str, str]]] = [
            ("positive", GenerationMode.POSITIVE, fixed),
            ("negative", GenerationMode.NEGATIVE, fixed)]
        seeded_here = {k: v for k, v in seeded.items() if k in path_names}
        if method == "get" and seeded_here:
            passes.append(("seeded", GenerationMode.POSITIVE, {**fixed, **seeded_here}))

        for pass_name, mode, path_parameters in passes:
            try:
                strategy = operation.as_strategy(generation_mode=mode,
                                                 path_parameters=path_parameters or None)
            except Exception as exc:  # e.g. nothing to negate
                report.notes.append(f"{label} {pass_name}: no strategy ({exc!r:.120})")
                continue

            @settings
            @hypothesis.given(case=strategy)
            def exercise(case: Any) -> None:
                bug = known_bug(raw.get("operationId", ""), case.path_parameters, case.query,
                                case.body)
                if bug is not None:
                    report.skipped_known_bugs[bug] += 1
                    hypothesis.reject()
                response = case.call(base_url=deployment.url, session=session, headers=auth,
                                     timeout=20)
                report.requests += 1
                statuses[response.status_code] += 1
                case.validate_response(response, checks=checks, headers=auth)
                if 400 <= response.status_code < 500:
                    content_type = (response.headers.get("content-type") or [""])[0]
                    problem = error_shape_problem(operation.path, method, response.status_code,
                                                  content_type, response.text)
                    assert problem is None, f"{label}: {problem}\n{case.as_curl_command()}"

            if seed is not None:
                exercise = hypothesis.seed(seed)(exercise)
            try:
                exercise()
            except hypothesis.errors.Unsatisfiable as exc:
                report.notes.append(f"{label} {pass_name}: unsatisfiable ({exc!s:.120})")
            except (Exception, FailureGroup) as exc:  # FailureGroup is a BaseExceptionGroup
                detail = str(exc) if str(exc).strip() else traceback.format_exc()
                report.failures.append(
                    f"--- {label} ({pass_name}): {type(exc).__name__} ---\n{detail[:6000]}")
    report.seconds = time.monotonic() - started
    return report
