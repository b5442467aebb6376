"""Reads shared by the API and the console: each function answers one question from the
runtime's tables (and, for cluster-wide answers, from the other workers), and returns plain data.

The API's handlers JSON-encode what these return; the console's pages render it. Functions that
gather from other workers take the caller's request only to know whether it was itself forwarded
by a peer (then this worker answers for its own partitions alone) and what to pass on; the path
they ask peers for is always the API's.
"""
