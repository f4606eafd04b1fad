"""Mosquitto password and ACL files: the format, and a real broker enforcing them."""

import base64
import os
import re
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridwatch.gateway.files import write_file_atomically
from gridwatch.registry.mqtt_acl import (
    DEFAULT_ITERATIONS,
    generate_device_password,
    hash_password,
    parse_password_file,
    render_acl,
    render_hashed_password_file,
    render_password_file,
    verify_password,
)
from tests.servers.mosquitto import MosquittoNotFoundError, MosquittoServer
from tests.servers.mqtt_device import Device

DATA = Path(__file__).parent / "data"
TIMEOUT_S = 5.0  # any single broker round trip
SETTLE_S = 0.3  # extra wait for a denied message after the positive control arrived
PREFIX = "gridwatch"
GATEWAY = "gridwatch-gateway"


def unavailable(message: str) -> None:
    """Skip locally when a tool is missing; fail in CI, where a skip would hide it."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# ------------------------------------------------------------------------------- password file
RECORDED = parse_password_file((DATA / "mosquitto_passwd_2.0.11.txt").read_text(encoding="utf-8"))


@pytest.mark.parametrize("user", ["RG-1", "RG-2"])  # $7$ (2.0 default) and $6$ (-H sha512)
def test_hashes_written_by_mosquitto_passwd_verify(user):
    assert verify_password("secret", RECORDED[user])
    assert not verify_password("Secret", RECORDED[user])


def test_same_salt_and_iterations_reproduce_mosquitto_passwd_exactly():
    _, iterations, salt, _ = RECORDED["RG-1"].split("$")[1:]
    encoded = hash_password("secret", iterations=int(iterations), salt=base64.b64decode(salt))
    assert encoded == RECORDED["RG-1"]


@pytest.mark.parametrize("algorithm", ["sha512-pbkdf2", "sha512"])
def test_live_mosquitto_passwd_output_verifies(tmp_path, algorithm):
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        unavailable("mosquitto_passwd not installed (Debian package mosquitto)")
    path = tmp_path / "passwd"
    path.touch()
    command = [tool, "-H", algorithm, "-b", str(path), "RG-9", "pa:ss word"]
    subprocess.run(command, check=True, capture_output=True, timeout=TIMEOUT_S)
    assert verify_password("pa:ss word", parse_password_file(path.read_text())["RG-9"])


def test_hash_format_is_mosquittos():
    encoded = hash_password("pw")
    match = re.fullmatch(r"\$7\$(\d+)\$([^$]+)\$([^$]+)", encoded)
    assert match is not None
    assert int(match[1]) == DEFAULT_ITERATIONS
    assert (len(base64.b64decode(match[2])), len(base64.b64decode(match[3]))) == (12, 64)
    assert hash_password("pw") != encoded  # a fresh salt each time


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"iterations": 0}, "at least 1"), ({"salt": b"short"}, "needs a 12-byte salt")],
)
def test_hash_parameters_mosquitto_would_refuse(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hash_password("pw", **kwargs)


@pytest.mark.parametrize("encoded", ["plain", "$5$abc$def", "$7$x$abc$def", "$7$10$a*c$def"])
def test_verify_refuses_what_is_not_a_mosquitto_hash(encoded):
    with pytest.raises(ValueError, match="not a Mosquitto password hash"):
        verify_password("pw", encoded)


def test_rendered_password_file_round_trips():
    text = render_password_file({"RG-2": "b", "RG-1": "a"}, iterations=5)
    entries = parse_password_file(text)
    assert list(entries) == ["RG-1", "RG-2"]
    assert [verify_password(pw, entries[user]) for user, pw in (("RG-1", "a"), ("RG-2", "b"))] == [
        True,
        True,
    ]
    assert render_hashed_password_file(entries) == text


@pytest.mark.parametrize(
    ("hashes", "message"),
    [
        ({"RG:1": RECORDED["RG-1"]}, "username 'RG:1' must match"),
        ({"RG 1": RECORDED["RG-1"]}, "username 'RG 1' must match"),
        ({"RG-1": "secret"}, "RG-1: not a Mosquitto password hash"),
    ],
)
def test_hashed_password_file_refuses_unsafe_entries(hashes, message):
    with pytest.raises(ValueError, match=message):
        render_hashed_password_file(hashes)


def test_parse_password_file_names_the_bad_line():
    with pytest.raises(ValueError, match="line 2: expected username:hash"):
        parse_password_file("a:$7$1$x$y\nnonsense\n")


def test_device_passwords_are_long_random_and_url_safe():
    passwords = {generate_device_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", pw) for pw in passwords)


# ------------------------------------------------------------------------------------ ACL file
def test_acl_is_an_allow_list_per_sensor():
    assert render_acl(["RG-2", "RG-1"], prefix="city/gw", gateway_user=GATEWAY) == (
        "# Written by gridwatch from the sensor registry; regenerate rather than edit.\n"
        "# Topic lines before the first user line would apply to anonymous clients: none.\n"
        "user gridwatch-gateway\n"
        "topic read city/gw/+/telemetry\n"
        "topic read city/gw/+/event\n"
        "topic read city/gw/+/status\n"
        "\n"
        "user RG-1\n"
        "topic write city/gw/RG-1/#\n"
        "\n"
        "user RG-2\n"
        "topic write city/gw/RG-2/#\n"
    )


@pytest.mark.parametrize(
    ("sensor_ids", "prefix", "gateway", "message"),
    [
        (["RG 1"], PREFIX, GATEWAY, "sensor id 'RG 1' must match"),
        (["RG-1", "RG-1"], PREFIX, GATEWAY, "duplicate sensor ids: RG-1"),
        ([GATEWAY], PREFIX, GATEWAY, "gateway_user 'gridwatch-gateway' is also a sensor id"),
        (["RG-1"], PREFIX, "gw:1", "gateway_user 'gw:1' must match"),
        (["RG-1"], "", GATEWAY, "prefix '' must be topic levels"),
        (["RG-1"], "gridwatch/#", GATEWAY, "prefix 'gridwatch/#' must be topic levels"),
        (["RG-1"], "gridwatch/", GATEWAY, "prefix 'gridwatch/' must be topic levels"),
        (["RG-1"], "city//gw", GATEWAY, "prefix 'city//gw' must be topic levels"),
        (["RG-1"], "grid watch", GATEWAY, "prefix 'grid watch' must be topic levels"),
    ],
)
def test_acl_refuses_names_unsafe_in_mosquitto_files(sensor_ids, prefix, gateway, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        render_acl(sensor_ids, prefix=prefix, gateway_user=gateway)


def test_files_are_replaced_atomically_and_not_world_readable(tmp_path):
    path = tmp_path / "gridwatch.acl"
    path.write_text("old", encoding="utf-8")
    write_file_atomically(path, "new\n")
    assert path.read_text(encoding="utf-8") == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["gridwatch.acl"]


# ------------------------------------------------------------------------------- real broker
CREDENTIALS = {GATEWAY: "gateway secret", "RG-1": "pw-rg-1", "RG-2": "pw-rg-2", "OLD-1": "pw-old"}
REGISTERED = ["RG-1", "RG-2"]  # OLD-1 stays in the password file but is no longer registered


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """Mosquitto with the shipped config and the files gridwatch renders."""
    workdir = tmp_path_factory.mktemp("mosquitto-acl")
    password_file, acl_file = workdir / "gridwatch.passwd", workdir / "gridwatch.acl"
    write_file_atomically(password_file, render_password_file(CREDENTIALS))
    write_file_atomically(acl_file, render_acl(REGISTERED, prefix=PREFIX, gateway_user=GATEWAY))
    try:
        server = MosquittoServer(workdir=workdir, password_file=password_file, acl_file=acl_file)
    except MosquittoNotFoundError as err:
        unavailable(str(err))
    with server:
        yield server


@pytest.fixture
def connect(broker: MosquittoServer) -> Iterator[Any]:
    """Connect clients as users from CREDENTIALS; all are closed after the test."""
    opened: list[Device] = []

    def _connect(user: str) -> Device:
        device = Device(broker, user, CREDENTIALS[user])
        opened.append(device)
        result = device.connect()
        assert not result.is_failure, f"{user}: CONNACK {result}"
        return device

    yield _connect
    for device in opened:
        device.close()


@pytest.fixture
def gateway(connect: Any) -> Device:
    device: Device = connect(GATEWAY)
    codes = device.subscribe(
        *(f"{PREFIX}/+/{channel}" for channel in ("telemetry", "event", "status"))
    )
    assert not any(code.is_failure for code in codes), codes
    return device


@pytest.mark.parametrize("channel", ["telemetry", "event", "status"])
def test_device_publishes_under_its_own_id(gateway, connect, channel):
    payload = uuid.uuid4().hex.encode()
    connect("RG-1").publish(f"{PREFIX}/RG-1/{channel}", payload, retain=channel == "status")
    gateway.wait_for(payload)
    assert (f"{PREFIX}/RG-1/{channel}", payload) in gateway.received


@pytest.mark.parametrize(
    ("user", "topic"),
    [
        pytest.param("RG-1", f"{PREFIX}/RG-2/telemetry", id="as-another-sensor"),
        pytest.param("RG-1", f"{PREFIX}/RG-1x/telemetry", id="as-a-longer-id"),
        pytest.param("OLD-1", f"{PREFIX}/OLD-1/telemetry", id="unregistered-user"),
        pytest.param(GATEWAY, f"{PREFIX}/RG-1/telemetry", id="gateway-cannot-write"),
    ],
)
def test_publishes_outside_own_topics_never_arrive(broker, gateway, connect, user, topic):
    denied, control = f"denied-{uuid.uuid4().hex}".encode(), f"ok-{uuid.uuid4().hex}".encode()
    publisher = connect(user)
    publisher.publish(topic, denied)  # acknowledged, then dropped by the broker
    # The denied PUBACK came first, so anything delivered for it would precede the control.
    connect("RG-2").publish(f"{PREFIX}/RG-2/telemetry", control)
    gateway.wait_for(control)
    time.sleep(SETTLE_S)
    assert all(payload != denied for _, payload in gateway.received)
    # The broker says why: the ACL, not some other loss.
    log = broker.log_path.read_text(encoding="utf-8", errors="replace")
    assert f"Denied PUBLISH from {publisher.client_id} (d0, q1, r0, m1, '{topic}'" in log


def test_devices_cannot_read_each_other(gateway, connect):
    eavesdropper = connect("RG-2")
    eavesdropper.subscribe(f"{PREFIX}/RG-1/telemetry")  # 2.0 grants it, then filters on read
    payload = uuid.uuid4().hex.encode()
    connect("RG-1").publish(f"{PREFIX}/RG-1/telemetry", payload)
    gateway.wait_for(payload)
    time.sleep(SETTLE_S)
    assert eavesdropper.received == []


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("RG-1", "pw-rg-2", id="wrong-password"),
        pytest.param("RG-3", "pw-rg-1", id="unknown-user"),
        pytest.param(None, None, id="anonymous"),
    ],
)
def test_bad_credentials_are_refused_at_connect(broker, username, password):
    device = Device(broker, username, password)
    try:
        result = device.connect()
    finally:
        device.close()
    # Mosquitto answers MQTT 3.1.1 CONNACK code 5 for all three; paho names it so.
    assert (result.is_failure, str(result)) == (True, "Not authorized")
