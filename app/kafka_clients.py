"""How every Kafka client eventide makes connects: one place turns the ``EVENTIDE_KAFKA_*``
security settings into client options.

:func:`kafka_client_options` gives the keyword arguments every aiokafka producer, consumer and
admin client is built with (next to its ``bootstrap_servers``); :func:`faust_credentials` gives
the same to the faust app (its own consumer, producer and admin client). PLAINTEXT (the default,
and the only protocol the embedded broker speaks) adds nothing.

The password is only ever handed to the client: it is not in ``repr(settings)``, and no
message eventide writes names it.
"""

from __future__ import annotations

import ssl
from typing import Any

from app.settings import Settings


def _no_key_password() -> str:
    # Without a password callback OpenSSL would prompt on the terminal for an encrypted key:
    # an encrypted key then fails to load instead, saying so.
    return ""


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL: the brokers' certificates verified (with
    EVENTIDE_KAFKA_CA_FILE, else the system's CAs) and host names checked; a client certificate
    when EVENTIDE_KAFKA_CERT_FILE is set."""
    if not settings.kafka_tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=settings.kafka_ca_file)
    if settings.kafka_cert_file:
        context.load_cert_chain(settings.kafka_cert_file, settings.kafka_key_file,
                                password=_no_key_password)
    return context


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and
    ``AIOKafkaAdminClient`` that carry the security settings (nothing for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if settings.kafka_tls:
        options["ssl_context"] = kafka_ssl_context(settings)
    if settings.kafka_sasl:
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism or "PLAIN",
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    return options


def faust_credentials(settings: Settings) -> Any:
    """faust's ``broker_credentials`` for the same settings (None for PLAINTEXT)."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(kafka_ssl_context(settings))
    # faust picks SASL_SSL when given a TLS context, SASL_PLAINTEXT without one.
    return faust.SASLCredentials(username=settings.kafka_sasl_username,
                                 password=settings.kafka_sasl_password,
                                 mechanism=settings.kafka_sasl_mechanism or "PLAIN",
                                 ssl_context=kafka_ssl_context(settings))
