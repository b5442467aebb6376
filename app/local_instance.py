"""The local instance ``eventide up`` runs, as the other commands find it: in its data dir.

- ``credentials.json`` (mode 0600): the credentials ``up`` generated the first time it ran
  without them. Later starts reuse them, so saved variables, the CLI's environment and console
  sessions keep working across restarts. Credentials supplied in the environment are never
  written here.
- ``instance.json`` (mode 0600): where the running ``up`` serves (HTTP host and port) and which
  broker it uses, plus the topic layout (prefix, partitions, state version) that commands reading
  topics need. Written when ``up`` starts its worker, removed when it stops.

:func:`environment` fills what the process environment lacks from these two files, so
``eventide import``, ``digest``, ``replay``, ``export``, ``deadletters`` ... run in the same
directory need nothing exported. Whatever is exported wins.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping

import orjson

from app.settings import Settings

CREDENTIALS_FILE = "credentials.json"
INSTANCE_FILE = "instance.json"
CREDENTIAL_VARIABLES = {"site_id": "EVENTIDE_SITE_ID", "api_key": "EVENTIDE_API_KEY",
                        "app_key": "EVENTIDE_APP_KEY"}


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def data_dir_of(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("EVENTIDE_DATA_DIR") or ".eventide")


def _write_private(path: Path, doc: object) -> None:
    """Write ``doc`` as JSON to ``path`` atomically, readable by this user only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "wb") as out:
            out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _read(path: Path) -> dict[str, str]:
    """A file this module wrote: {} when missing, unreadable, or not trustworthy (owned by
    another user, or writable by others: a command run in someone else's directory must not be
    sent, with this user's exported key, wherever a planted file says)."""
    try:
        info = path.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            return {}
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): str(v) for k, v in doc.items() if isinstance(v, (str, int)) and v != ""}


def read_credentials(data_dir: Path) -> dict[str, str]:
    """Saved credentials, by Settings field (site_id, api_key, app_key); {} when none."""
    saved = _read(data_dir / CREDENTIALS_FILE)
    return {field: saved[field] for field in CREDENTIAL_VARIABLES if saved.get(field)}


def kept_credentials(supplied: Settings) -> tuple[Settings, list[str]]:
    """``supplied`` with every missing credential filled: from ``credentials.json`` in its data
    dir when saved there, else generated and saved (0600). Returns the settings and the fields
    taken from the file or generated (not supplied in the environment)."""
    path = supplied.data_dir / CREDENTIALS_FILE
    saved = read_credentials(supplied.data_dir)
    missing = [field for field in CREDENTIAL_VARIABLES if not getattr(supplied, field)]
    if not missing:
        return supplied, []
    filled = supplied.replace(**{field: saved[field] for field in missing if field in saved})
    if all(getattr(filled, field) for field in missing):
        return filled, missing
    generated = filled.with_generated_credentials()
    _write_private(path, {**saved, **{field: getattr(generated, field) for field in missing
                                      if field not in saved}})
    return generated, missing


def write_instance(settings: Settings) -> Path:
    """Record where this ``up`` serves and which broker it uses (see the module doc)."""
    env = {"EVENTIDE_HTTP_HOST": settings.http_host,
           "EVENTIDE_HTTP_PORT": str(settings.http_port),
           "EVENTIDE_TOPIC_PREFIX": settings.topic_prefix,
           "EVENTIDE_PARTITIONS": str(settings.partitions),
           "EVENTIDE_STATE_VERSION": settings.state_version}
    if settings.embedded:
        env["EVENTIDE_EMBEDDED_BROKER_PORT"] = str(settings.embedded_broker_port)
    else:
        env["EVENTIDE_BROKER"] = settings.broker_url
        env["EVENTIDE_BROKER_FLAVOR"] = "tansu" if settings.tansu else "kafka"
    path = settings.data_dir / INSTANCE_FILE
    _write_private(path, {"pid": os.getpid(), **env})
    return path


def remove_instance(settings: Settings) -> None:
    path = settings.data_dir / INSTANCE_FILE
    if _read(path).get("pid") == str(os.getpid()):
        try:
            path.unlink()
        except OSError:
            pass


def environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus what it lacks that the local instance recorded in its data dir (the
    credentials ``up`` generated, its HTTP address, broker and topic layout). A variable set in
    ``environ`` always wins; with no local instance this is ``environ`` unchanged."""
    data_dir = data_dir_of(environ)
    found = {CREDENTIAL_VARIABLES[field]: value
             for field, value in read_credentials(data_dir).items()}
    instance = _read(data_dir / INSTANCE_FILE)
    instance.pop("pid", None)
    if instance and instance.get("EVENTIDE_HTTP_HOST") not in LOCAL_HOSTS:
        # `up` listening on all interfaces (or elsewhere): talk to it over loopback.
        instance["EVENTIDE_HTTP_HOST"] = "127.0.0.1"
    if "EVENTIDE_BROKER" in environ:
        # A broker chosen by hand: the embedded one's port or flavour would not apply to it.
        for name in ("EVENTIDE_EMBEDDED_BROKER_PORT", "EVENTIDE_BROKER_FLAVOR"):
            instance.pop(name, None)
    found.update({k: v for k, v in instance.items() if k.startswith("EVENTIDE_")})
    merged = dict(environ)
    for name, value in found.items():
        if not merged.get(name):
            merged[name] = value
    return merged
