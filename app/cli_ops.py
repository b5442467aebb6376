"""Operator subcommands of ``eventide`` that talk to a running worker over HTTP."""

from __future__ import annotations

import argparse


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add operator subcommands to the ``eventide`` parser."""
