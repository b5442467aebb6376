"""Unit tests for app.render: liquid templates over customer attributes and event data."""

from __future__ import annotations

import time
from typing import Any

import pytest
from liquid.exceptions import LiquidError

from app.render import TEMPLATE_CACHE_SIZE, TemplateError, _parse, render

CUSTOMER = {"first_name": "Ada", "email": "ada@example.com", "plan": "pro"}
EVENT = {
    "total": 23.45,
    "items": [{"type": "monitor", "price": 199}, {"type": "cable", "price": 9}],
    "sign up date": "2024-01-31",
    "placed_at": 1_365_436_200,
    "coupon": "",
}


Data = dict[str, Any]


def lenient(template: str, customer: Data = CUSTOMER, event: Data = EVENT) -> str:
    return render(template, customer=customer, event=event)


def strict(template: str, customer: Data = CUSTOMER, event: Data = EVENT) -> str:
    return render(template, customer=customer, event=event, strict=True)


# --- variables -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [lenient, strict])
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Total: {{event.total}}", "Total: 23.45"),
        ("{{event.items[0].type}}", "monitor"),
        ("{{ event.items[1].price }}", "9"),
        ('{{event["sign up date"]}}', "2024-01-31"),
        ('{{ event["items"][0]["type"] }}', "monitor"),
        ("Hi {{customer.first_name}}", "Hi Ada"),
        ('Hi {{customer.first_name | default: "there"}}', "Hi Ada"),
    ],
)
def test_documented_examples(mode: Any, template: str, expected: str) -> None:
    assert mode(template) == expected


def test_default_fills_in_a_missing_attribute() -> None:
    assert lenient('Hi {{customer.first_name | default: "there"}}', customer={}) == "Hi there"


def test_default_fills_in_a_missing_attribute_in_strict_mode_too() -> None:
    assert strict('Hi {{customer.first_name | default: "there"}}', customer={}) == "Hi there"


def test_default_replaces_empty_strings() -> None:
    assert lenient('{{ event.coupon | default: "none" }}') == "none"


# --- undefined variables ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ customer.last_name }}",
        "{{ event.missing.deeper }}",
        "{{ event.items[9].type }}",
        "{{ nope }}",
    ],
)
def test_undefined_renders_empty_by_default(template: str) -> None:
    assert lenient(f"[{template}]") == "[]"


def test_undefined_is_false_in_a_lenient_condition() -> None:
    assert lenient("{% if customer.vip %}vip{% else %}regular{% endif %}") == "regular"


def test_undefined_raises_in_strict_mode_with_its_line() -> None:
    with pytest.raises(TemplateError) as info:
        strict("Hello\n{{ customer.first_name }}\n{{ customer.last_name }}")
    assert info.value.line == 3
    assert "last_name" in info.value.message
    assert str(info.value).startswith("line 3: ")
    assert isinstance(info.value.__cause__, LiquidError)


def test_undefined_in_a_strict_condition_raises() -> None:
    with pytest.raises(TemplateError) as info:
        strict("{% if customer.vip %}vip{% endif %}")
    assert info.value.line == 1


def test_strict_and_lenient_parses_are_cached_separately() -> None:
    template = "[{{ customer.cache_probe }}]"
    assert lenient(template) == "[]"
    with pytest.raises(TemplateError):
        strict(template)
    assert lenient(template) == "[]"


# --- syntax errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "line", "fragment"),
    [
        ("Hello\n{{ customer.first_name }\nBye", 2, "expected"),
        ("line one\nline two\n{{ event.total event.items }}", 3, "expected end of expression"),
        ("one\n{% nosuchtag %}", 2, "unexpected tag 'nosuchtag'"),
        ("one\ntwo\n{% endif %}", 3, "unexpected tag 'endif'"),
        ("{% for %}{% endfor %}", 1, "missing expression"),
        ("a\n{{ event.total | }}\nc", 2, "expected"),
        ("a\nb\n{% if event.total %}\nunclosed", 4, "found end of template"),
        ("x\n{% for i in event.items %}\n{{ i.type }}", 3, "expected tag endfor"),
    ],
)
def test_syntax_error_reports_its_line(template: str, line: int, fragment: str) -> None:
    for mode in (lenient, strict):
        with pytest.raises(TemplateError) as info:
            mode(template)
        assert info.value.line == line, info.value
        assert fragment in info.value.message
        assert isinstance(info.value.__cause__, LiquidError)


def test_unknown_filter_is_a_template_error_with_its_line() -> None:
    with pytest.raises(TemplateError) as info:
        lenient("ok\n{{ customer.first_name | shout }}")
    assert (info.value.line, info.value.message) == (2, "unknown filter 'shout'")


def test_template_error_without_a_line_prints_just_the_message() -> None:
    error = TemplateError("broken", None)
    assert (str(error), error.message, error.line) == ("broken", "broken", None)


# --- loops and filters -----------------------------------------------------------------------


def test_for_loop_over_event_items() -> None:
    assert lenient("{% for item in event.items %}{{item.type}}{% endfor %}") == "monitorcable"


def test_for_loop_with_forloop_helpers() -> None:
    template = (
        "{% for item in event.items %}"
        "{{ forloop.index }}.{{ item.type | upcase }}{% unless forloop.last %}, {% endunless %}"
        "{% endfor %}"
    )
    assert lenient(template) == "1.MONITOR, 2.CABLE"


def test_for_loop_over_a_missing_list_renders_nothing_when_lenient() -> None:
    assert lenient("[{% for item in event.nothing %}{{ item }}{% endfor %}]") == "[]"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ customer.first_name | upcase }}", "ADA"),
        ("{{ customer.first_name | downcase }}", "ada"),
        ("{{ event.items | size }}", "2"),
        ("{{ customer.first_name | size }}", "3"),
        ("{{ event.items | map: 'type' | join: ', ' }}", "monitor, cable"),
        ("{{ event.total | times: 2 }}", "46.9"),
        ("{{ event.items[0].price | plus: event.items[1].price }}", "208"),
        ('{{ event["sign up date"] | date: "%b %d, %Y" }}', "Jan 31, 2024"),
        ('{{ "2024-01-31T10:00:00Z" | date: "%Y-%m-%d %H:%M" }}', "2024-01-31 10:00"),
        ("{% if event.items.size > 1 %}many{% else %}one{% endif %}", "many"),
    ],
)
def test_filters(template: str, expected: str) -> None:
    assert lenient(template) == expected


def test_date_filter_reads_unix_timestamps_as_utc() -> None:
    # 1365436200 is 2013-04-08 15:50:00 UTC, whatever zone the host runs in.
    assert lenient('{{ event.placed_at | date: "%Y-%m-%d %H:%M %Z" }}') == "2013-04-08 15:50 UTC"
    assert lenient('{{ "1365436200" | date: "%H:%M" }}') == "15:50"


def test_date_filter_prints_out_of_range_numbers_unchanged() -> None:
    for huge in ("9" * 5000, "9" * 18, 10**30):
        assert lenient('{{ event.n | date: "%Y" }}', event={"n": huge}) == str(huge)


def test_date_filter_on_undefined_renders_empty() -> None:
    assert lenient('[{{ event.never | date: "%Y" }}]') == "[]"


def test_output_is_not_html_escaped() -> None:
    assert lenient("{{ event.html }}", event={"html": "<b>&</b>"}) == "<b>&</b>"


# --- cache -----------------------------------------------------------------------------------


def test_parsed_templates_are_reused_from_a_bounded_cache() -> None:
    template = "cached {{ customer.first_name }}"
    assert _parse(template, False) is _parse(template, False)
    assert _parse(template, False) is not _parse(template, True)
    assert _parse.cache_info().maxsize == TEMPLATE_CACHE_SIZE


def test_a_cached_template_renders_each_recipient_with_their_own_data() -> None:
    template = "Hi {{ customer.first_name }}, you spent {{ event.total }}"
    assert lenient(template, {"first_name": "Ada"}, {"total": 1}) == "Hi Ada, you spent 1"
    assert lenient(template, {"first_name": "Grace"}, {"total": 2}) == "Hi Grace, you spent 2"


def test_chained_replaces_cannot_build_a_huge_string() -> None:
    """Issue 14.2: 429 bytes of template with four replaces once built a 622 MB string."""
    a60 = "a" * 60
    template = (f'{{% assign s = "{a60}" %}}{{{{ s | replace: "a", "{a60}" | replace: "a", '
                f'"{a60}" | replace: "a", "{a60}" | replace: "a", "{a60}" | size }}}}')
    with pytest.raises(TemplateError, match="work limit") as caught:
        render(template, customer={}, event={})
    assert caught.value.line == 1


def test_a_huge_range_is_refused_before_any_work() -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateError, match="join input"):
        render('{{ (1..10000000) | join: "," | size }}', customer={}, event={})
    assert time.perf_counter() - started < 0.5


def test_filters_within_the_bounds_work_as_before() -> None:
    assert render('{{ "x" | replace: "", "yy" }}', customer={}, event={}) == "yyxyy"
    assert render('{{ (1..1000) | join: "" | size }}', customer={}, event={}) == "2893"
    assert render('{{ event.items | map: "t" | join: "," }}', customer={},
                  event={"items": [{"t": "a"}, {"t": "b"}]}) == "a,b"
