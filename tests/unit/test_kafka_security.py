"""Kafka security settings (issue 14): EVENTIDE_KAFKA_* map to the same client options for
every aiokafka client and for faust, bad combinations are named at once, and the password is
never shown."""

from __future__ import annotations

import ast
import logging
import ssl
import subprocess
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from app.kafka_clients import faust_credentials, kafka_client_options
from app.producer import Producer
from app.settings import Settings, SettingsError
from app.wiring import faust_options
from tests.support.harness import REPO

PASSWORD = "s3cret-Pa55word"
BROKER = {"EVENTIDE_BROKER": "kafka://k1:9093,k2:9093"}


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("pem")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=kafka", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


def test_plaintext_adds_nothing() -> None:
    settings = Settings.from_env(BROKER)
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert kafka_client_options(settings) == {}
    assert faust_credentials(settings) is None
    assert "broker_credentials" not in faust_options(settings)
    assert "security_protocol" not in Producer(settings)._options


def test_sasl_ssl_with_scram_a_password_file_and_a_ca(tmp_path: Path,
                                                       pem: tuple[str, str]) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    settings = Settings.from_env({
        **BROKER, "EVENTIDE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "EVENTIDE_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "EVENTIDE_KAFKA_SASL_USERNAME": "eventide",
        "EVENTIDE_KAFKA_SASL_PASSWORD_FILE": str(secret), "EVENTIDE_KAFKA_CA_FILE": pem[0]})
    options = kafka_client_options(settings)
    context = options.pop("ssl_context")
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                       "sasl_plain_username": "eventide", "sasl_plain_password": PASSWORD}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "kafka"),),)]
    # faust's clients get the same options (through its own mapping of the credentials).
    credentials = faust_options(settings)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    from_faust = dict(credentials_to_aiokafka_auth(credentials))
    assert isinstance(from_faust.pop("ssl_context"), ssl.SSLContext)
    assert from_faust == options
    # The one producer of a process too.
    producer = Producer(settings)._options
    assert producer["security_protocol"] == "SASL_SSL"
    assert producer["sasl_plain_password"] == PASSWORD


def test_sasl_plaintext_defaults_to_plain() -> None:
    settings = Settings.from_env({
        **BROKER, "EVENTIDE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "EVENTIDE_KAFKA_SASL_USERNAME": "u", "EVENTIDE_KAFKA_SASL_PASSWORD": PASSWORD})
    assert kafka_client_options(settings) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "u", "sasl_plain_password": PASSWORD}
    assert dict(credentials_to_aiokafka_auth(faust_credentials(settings))) == {
        **kafka_client_options(settings), "ssl_context": None}
    for mechanism in ("SCRAM-SHA-256", "PLAIN"):
        chosen = Settings.from_env({
            **BROKER, "EVENTIDE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "EVENTIDE_KAFKA_SASL_MECHANISM": mechanism, "EVENTIDE_KAFKA_SASL_USERNAME": "u",
            "EVENTIDE_KAFKA_SASL_PASSWORD": PASSWORD})
        assert kafka_client_options(chosen)["sasl_mechanism"] == mechanism


def test_ssl_with_a_client_certificate(pem: tuple[str, str]) -> None:
    cert, key = pem
    settings = Settings.from_env({**BROKER, "EVENTIDE_KAFKA_SECURITY_PROTOCOL": "SSL",
                                  "EVENTIDE_KAFKA_CERT_FILE": cert,
                                  "EVENTIDE_KAFKA_KEY_FILE": key})
    options = kafka_client_options(settings)
    assert set(options) == {"security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED  # system CAs by default
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def test_bad_combinations_are_all_named_at_once(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({
            **BROKER, "EVENTIDE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "EVENTIDE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",  # but no username, no password
            "EVENTIDE_KAFKA_CA_FILE": missing, "EVENTIDE_KAFKA_KEY_FILE": missing})
    problems = "\n".join(caught.value.problems)
    assert f"EVENTIDE_KAFKA_CA_FILE={missing!r}: no such file" in problems
    assert "EVENTIDE_KAFKA_SASL_USERNAME: required with EVENTIDE_KAFKA_SECURITY_PROTOCOL=" \
           "SASL_SSL" in problems
    assert "EVENTIDE_KAFKA_SASL_PASSWORD (or EVENTIDE_KAFKA_SASL_PASSWORD_FILE): required" \
        in problems
    assert "EVENTIDE_KAFKA_KEY_FILE: needs EVENTIDE_KAFKA_CERT_FILE" in problems

    with pytest.raises(SettingsError) as caught:
        Settings.from_env({
            **BROKER, "EVENTIDE_KAFKA_SASL_MECHANISM": "PLAIN",  # protocol left at PLAINTEXT
            "EVENTIDE_KAFKA_SASL_USERNAME": "u", "EVENTIDE_KAFKA_CA_FILE": __file__})
    assert caught.value.problems == [
        ("EVENTIDE_KAFKA_SASL_MECHANISM: used only with EVENTIDE_KAFKA_SECURITY_PROTOCOL="
         "SASL_PLAINTEXT or SASL_SSL (it is PLAINTEXT)"),
        ("EVENTIDE_KAFKA_SASL_USERNAME: used only with EVENTIDE_KAFKA_SECURITY_PROTOCOL="
         "SASL_PLAINTEXT or SASL_SSL (it is PLAINTEXT)"),
        ("EVENTIDE_KAFKA_CA_FILE: used only with EVENTIDE_KAFKA_SECURITY_PROTOCOL=SSL or "
         "SASL_SSL (it is PLAINTEXT)")]

    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"EVENTIDE_KAFKA_SECURITY_PROTOCOL": "TLS",
                           "EVENTIDE_KAFKA_SASL_MECHANISM": "GSSAPI"})
    assert caught.value.problems == [
        ("EVENTIDE_KAFKA_SECURITY_PROTOCOL='TLS': expected one of PLAINTEXT, SSL, "
         "SASL_PLAINTEXT, SASL_SSL"),
        ("EVENTIDE_KAFKA_SASL_MECHANISM='GSSAPI': expected one of PLAIN, SCRAM-SHA-256, "
         "SCRAM-SHA-512")]

    with pytest.raises(SettingsError) as caught:  # no EVENTIDE_BROKER: the embedded broker
        Settings.from_env({"EVENTIDE_KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert caught.value.problems == [
        ("EVENTIDE_KAFKA_SECURITY_PROTOCOL=SSL: needs EVENTIDE_BROKER (the embedded broker "
         "speaks PLAINTEXT only)")]


def test_the_password_is_never_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env = {**BROKER, "EVENTIDE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "EVENTIDE_KAFKA_SASL_USERNAME": "u", "EVENTIDE_KAFKA_SASL_PASSWORD": PASSWORD,
           "EVENTIDE_APP_KEY": "app-" + PASSWORD, "EVENTIDE_API_KEY": "api-" + PASSWORD,
           "EVENTIDE_CLUSTER_SECRET": "cluster-" + PASSWORD}
    settings = Settings.from_env(env)
    shown = [repr(settings), str(settings), repr(faust_credentials(settings)),
             repr(faust_options(settings))]
    # Both a password and a password file, plus a bad value: the problems name no secret.
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**env, "EVENTIDE_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "p"),
                           "EVENTIDE_KAFKA_SASL_MECHANISM": "MD5"})
    assert "both set" in str(caught.value)
    unreadable = tmp_path / "dir"
    unreadable.mkdir()
    with pytest.raises(SettingsError) as caught_file:
        Settings.from_env({**BROKER, "EVENTIDE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                           "EVENTIDE_KAFKA_SASL_USERNAME": "u",
                           "EVENTIDE_KAFKA_SASL_PASSWORD_FILE": str(unreadable)})
    assert "EVENTIDE_KAFKA_SASL_PASSWORD_FILE=" in str(caught_file.value)
    Producer(settings)
    kafka_client_options(settings)
    shown += [str(caught.value), str(caught_file.value), caplog.text]
    for text in shown:
        assert PASSWORD not in text, text


def test_every_kafka_client_eventide_makes_gets_the_security_options() -> None:
    """Every AIOKafkaProducer/Consumer/AdminClient built in app/ and tables/ takes its options
    from app.kafka_clients (passed in as ``**options``). The input log only ever talks to the
    embedded broker, which refuses security settings (PLAINTEXT only). Nor does app/testing: the
    tests' and benchmarks' harness, which only talks to their own embedded broker."""
    clients = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
    exempt = {Path("app/ops/input_log.py")}
    found = []
    for path in sorted([*(REPO / "app").rglob("*.py"), *(REPO / "tables").rglob("*.py")]):
        relative = path.relative_to(REPO)
        if relative.parts[:2] == ("app", "testing"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in clients:
                found.append(relative)
                if relative not in exempt:
                    assert any(k.arg is None for k in node.keywords), \
                        f"{relative}:{node.lineno} builds a Kafka client without the options"
    assert len(found) >= 10
