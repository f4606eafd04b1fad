"""Mosquitto password and ACL files for registered sensors: each device publishes only as itself.

Password lines use Mosquitto 2's own `sha512-pbkdf2` format, as written by mosquitto_passwd:
`username:$7$<iterations>$<base64 12-byte salt>$<base64 64-byte PBKDF2-HMAC-SHA512>`.
Mosquitto 2.0 refuses any other salt length; it reads the iteration count from the line.

The ACL lists one `user` block per sensor (`topic write {prefix}/{id}/#`) rather than the single
`pattern write {prefix}/%u/#`: the file is then an allow-list of registered sensors, so a user
left in the password file (a retired sensor, an operator account) can publish nothing, and the
gateway's own username never gains write access under the prefix.
"""

import base64
import hashlib
import hmac
import re
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping

from gridwatch.domain.sensors import SENSOR_ID_RE

# Mosquitto 2.1's default (2.0 used 101). Device passwords are random, so the count guards only
# human-chosen passwords such as the gateway's; each connect costs the broker this many rounds.
DEFAULT_ITERATIONS = 1000
SALT_BYTES = 12  # the only salt length Mosquitto 2.0 accepts
_PBKDF2 = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")
_SHA512 = re.compile(r"^\$6\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")
CHANNELS = ("telemetry", "event", "status")


def generate_device_password() -> str:
    """A random 32-character password (192 bits, URL-safe base64: safe in shells and URLs)."""
    return secrets.token_urlsafe(24)


def hash_password(
    password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """The Mosquitto `$7$` (PBKDF2-HMAC-SHA512) encoding of a password."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, not {iterations}")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    if len(salt) != SALT_BYTES:
        raise ValueError(f"Mosquitto needs a {SALT_BYTES}-byte salt, not {len(salt)} bytes")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against a Mosquitto `$7$` or legacy `$6$` (salted SHA-512) hash."""
    if match := _PBKDF2.match(encoded):
        iterations, salt, expected = int(match[1]), _unb64(match[2]), _unb64(match[3])
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    elif match := _SHA512.match(encoded):
        # Mosquitto 1.x hashed the password followed by the salt, once.
        salt, expected = _unb64(match[1]), _unb64(match[2])
        digest = hashlib.sha512(password.encode() + salt).digest()
    else:
        raise ValueError("not a Mosquitto password hash ($6$ or $7$)")
    return hmac.compare_digest(digest, expected)


def render_password_file(
    credentials: Mapping[str, str], *, iterations: int = DEFAULT_ITERATIONS
) -> str:
    """A password file from plaintext passwords by username, one hashed line each, sorted."""
    hashes = {user: hash_password(pw, iterations=iterations) for user, pw in credentials.items()}
    return render_hashed_password_file(hashes)


def render_hashed_password_file(hashes: Mapping[str, str]) -> str:
    """A password file from stored `$7$`/`$6$` hashes by username (plaintext never needed)."""
    lines = []
    for user in sorted(hashes):
        _check_username(user, "username")
        if not (_PBKDF2.match(hashes[user]) or _SHA512.match(hashes[user])):
            raise ValueError(f"{user}: not a Mosquitto password hash ($6$ or $7$)")
        lines.append(f"{user}:{hashes[user]}\n")
    return "".join(lines)


def parse_password_file(text: str) -> dict[str, str]:
    """Hashes by username from a Mosquitto password file (blank and # lines skipped)."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        user, colon, encoded = line.partition(":")
        if not colon or not user or not encoded:
            raise ValueError(f"line {number}: expected username:hash")
        entries[user] = encoded.strip()
    return entries


def render_acl(sensor_ids: Iterable[str], *, prefix: str, gateway_user: str) -> str:
    """An ACL file: each sensor writes only under {prefix}/{id}/#; the gateway reads all of them."""
    _check_prefix(prefix)
    _check_username(gateway_user, "gateway_user")
    ids = list(sensor_ids)
    for sensor_id in ids:
        _check_username(sensor_id, "sensor id")
    if duplicates := sorted(i for i, n in Counter(ids).items() if n > 1):
        raise ValueError(f"duplicate sensor ids: {', '.join(duplicates)}")
    if gateway_user in ids:
        raise ValueError(f"gateway_user {gateway_user!r} is also a sensor id")
    lines = [
        "# Written by gridwatch from the sensor registry; regenerate rather than edit.",
        "# Topic lines before the first user line would apply to anonymous clients: none.",
        f"user {gateway_user}",
        *(f"topic read {prefix}/+/{channel}" for channel in CHANNELS),
    ]
    for sensor_id in sorted(ids):
        # One topic covers telemetry, event and the retained status (also the last will).
        lines += ["", f"user {sensor_id}", f"topic write {prefix}/{sensor_id}/#"]
    return "\n".join(lines) + "\n"


def _check_username(name: str, what: str) -> None:
    # The sensor-id pattern excludes ':' (password-file separator), spaces (ACL token
    # separator) and the MQTT wildcards, so one rule makes a name safe in both files.
    if not SENSOR_ID_RE.match(name):
        raise ValueError(f"{what} {name!r} must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}")


def _check_prefix(prefix: str) -> None:
    levels = prefix.split("/")
    if not prefix or any(not level or not SENSOR_ID_RE.match(level) for level in levels):
        raise ValueError(f"prefix {prefix!r} must be topic levels like 'gridwatch' or 'city/gw'")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
