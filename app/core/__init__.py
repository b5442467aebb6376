"""Pure domain logic: plain functions of their inputs, with no I/O, clocks or globals.

Agents and the HTTP tier call into these modules; everything here is testable with plain pytest.
"""
