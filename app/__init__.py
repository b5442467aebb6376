"""eventide: a Kafka-native customer-event processor.

``app`` holds the wiring (settings, topic registry, the faust app, the HTTP API, the CLI and the
embedded broker); ``agents`` holds the thin stream processors; ``tables`` holds the partitioned
RocksDB state and its changelogs; the pure logic lives in ``app.core`` and friends.
"""

import tables.native

tables.native.check()  # before any compiled module is imported (tables/native.py)
