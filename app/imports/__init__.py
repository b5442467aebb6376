"""Bulk imports: turning uploaded files into the same events the track API accepts."""
