"""Test harness: the real embedded broker, real worker processes, plain Kafka clients."""
