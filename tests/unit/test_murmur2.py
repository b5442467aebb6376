"""The partitioner's murmur2 is Kafka's: the same as aiokafka's (which follows the Java client)
on any key, so every hop and every client agree on a key's partition."""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from app.producer import murmur2, partition_for


@settings(max_examples=2_000, deadline=None)
@given(st.binary(max_size=80))
def test_murmur2_is_aiokafkas(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


def test_known_partitions_of_the_java_client() -> None:
    # Kafka's DefaultPartitioner: toPositive(murmur2(key)) % partitions.
    for key in (b"", b"a", b"ab", b"abc", b"abcd", b"person-0001234", "näme".encode()):
        assert partition_for(key, 8) == (aiokafka_murmur2(key) & 0x7FFFFFFF) % 8
    # The Java client's own cases (UtilsTest.testMurmur2), as unsigned 32-bit values.
    for key, java in ((b"21", -973932308), (b"foobar", -790332482),
                      (b"a-little-bit-long-string", -985981536),
                      (b"a-little-bit-longer-string", -1486304829),
                      (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
                      (b"abc", 479470107)):
        assert murmur2(key) == java & 0xFFFFFFFF
