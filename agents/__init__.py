"""Thin faust agents: decode, read state, call the pure step, write state, send.

Each module has a ``register(app, runtime)`` called once from :mod:`app.wiring`.
"""

import tables.native

tables.native.check()  # before any compiled module is imported (tables/native.py)
