"""Webhook subscriptions through the API: create, read, change, delete, rotate; who may."""

import asyncio
import base64

import pytest

from gridwatch.api.roles import ROLE_MATRIX, Permission, Role
from gridwatch.dispatch.subscriptions import ensure_subscription
from tests.integration.apiclient import running_api
from tests.servers.webhook_receiver import new_secret

BASE = "/api/v1/webhooks"
URL = "https://dispatch.example/hooks"
ADMIN = Role.ADMIN


@pytest.fixture
async def api(sessions):
    async with running_api(sessions) as api:
        yield api


async def _create(api, body=None, *, role=ADMIN):
    return await api.client.post(BASE, json={"url": URL} | (body or {}), headers=api.as_role(role))


async def _patch(api, sub_id, body, *, if_match='"1"', role=ADMIN):
    headers = api.as_role(role) | ({} if if_match is None else {"If-Match": if_match})
    return await api.client.patch(f"{BASE}/{sub_id}", json=body, headers=headers)


async def _rotate(api, sub_id, body=None, *, if_match="*", role=ADMIN):
    headers = api.as_role(role) | ({} if if_match is None else {"If-Match": if_match})
    return await api.client.post(f"{BASE}/{sub_id}/rotate-secret", json=body, headers=headers)


async def _delete(api, sub_id, *, if_match='"1"', role=ADMIN):
    headers = api.as_role(role) | ({} if if_match is None else {"If-Match": if_match})
    return await api.client.delete(f"{BASE}/{sub_id}", headers=headers)


async def _get(api, sub_id="", *, role=ADMIN):
    path = f"{BASE}/{sub_id}" if sub_id else BASE
    return await api.client.get(path, headers=api.as_role(role))


# ------------------------------------------------------------------------------------ creating
async def test_a_generated_secret_is_shown_once(api):
    created = await _create(
        api,
        {
            "types": ["gridwatch.case.opened", "gridwatch.case.escalated"],
            "filter": {"category": "event:04*", "grid": "110101", "min_severity": "orange"},
            "description": "Dongcheng emergencies",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert created.headers["location"] == f"{BASE}/{body['id']}"
    assert created.headers["etag"] == '"1"'
    assert created.headers["cache-control"] == "no-store"
    assert body | {"secret": "-", "id": "-", "created_at": "-", "updated_at": "-"} == {
        "id": "-",
        "url": URL,
        "types": ["gridwatch.case.opened", "gridwatch.case.escalated"],
        "filter": {"category": "event:04*", "grid": "110101", "min_severity": "orange"},
        "enabled": True,
        "disabled_reason": None,
        "description": "Dongcheng emergencies",
        "managed_by": None,
        "version": 1,
        "created_at": "-",
        "updated_at": "-",
        "previous_secret_expires_at": None,
        "secret": "-",
    }
    fetched = await _get(api, body["id"])
    listed = await _get(api)
    changed = await _patch(api, body["id"], {"description": "changed"})
    for answer in (fetched, listed, changed):
        assert answer.status_code == 200, answer.text
        assert '"secret"' not in answer.text
        assert secret not in answer.text
    assert fetched.json() == {k: v for k, v in body.items() if k != "secret"}
    assert [item["id"] for item in listed.json()["items"]] == [body["id"]]


async def test_a_secret_given_is_the_one_used(api):
    secret = new_secret()
    created = await _create(api, {"secret": secret})
    assert created.json()["secret"] == secret


async def test_one_subscription_per_url(api):
    first = await _create(api)
    again = await _create(api)
    assert again.status_code == 409
    assert again.json()["subscription_id"] == first.json()["id"]
    assert again.json()["errors"][0]["field"] == "url"


# ---------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"url": "ftp://dispatch.example/hooks"}, "url", "http:// or https://"),
        ({"url": "/hooks"}, "url", "http:// or https://"),
        ({"url": "https://dispatch.example/#top"}, "url", "#fragment"),
        ({"url": "https://x.example/" + "a" * 1900}, "url", "at most 1900"),
        ({"types": ["gridwatch.case.exploded"]}, "types.0", "gridwatch.case.opened"),
        ({"filter": {"category": "event 04"}}, "filter.category", "prefix ending in '*'"),
        ({"filter": {"grid": "1101"}}, "filter.grid", "must have 15 digits"),
        ({"filter": {"min_severity": "purple"}}, "filter.min_severity", "'blue'"),
        ({"filter": {"colour": "red"}}, "filter.colour", "Extra inputs"),
        ({"secret": "not-a-secret"}, "secret", "must start with 'whsec_'"),
        ({"secret": "whsec_MDEyMzQ1Njc4OWFiY2RlZg=="}, "secret", "24 to 64 bytes"),
        ({"description": "x" * 501}, "description", "at most 500"),
        ({"token": "x"}, "token", "Extra inputs"),
    ],
)
async def test_a_bad_subscription_is_refused_naming_the_field(api, body, field, reason):
    response = await _create(api, body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    assert error["field"] == field
    assert reason in error["reason"]
    assert (await _get(api)).json()["items"] == []


async def test_a_missing_url_is_named(api):
    response = await api.client.post(BASE, json={}, headers=api.as_role(ADMIN))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["url"]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"url": None}, "url", "must not be null"),
        ({"filter": None}, "filter", "must not be null"),
        ({"enabled": None}, "enabled", "must not be null"),
        ({"secret": new_secret()}, "secret", "Extra inputs"),
        ({"filter": {"grid": "abc"}}, "filter.grid", "only digits"),
    ],
)
async def test_a_bad_change_is_refused_naming_the_field(api, body, field, reason):
    sub_id = (await _create(api)).json()["id"]
    response = await _patch(api, sub_id, body)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["field"], reason in error["reason"]) == (field, True)
    assert (await _get(api, sub_id)).json()["version"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [({"overlap_s": -1}, "overlap_s"), ({"secret": "whsec_x"}, "secret"), ({"x": 1}, "x")],
)
async def test_a_bad_rotation_is_refused_naming_the_field(api, body, field):
    sub_id = (await _create(api)).json()["id"]
    response = await _rotate(api, sub_id, body)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_rotating_to_the_secret_in_force_is_refused(api):
    secret = new_secret()
    sub_id = (await _create(api, {"secret": secret})).json()["id"]
    response = await _rotate(api, sub_id, {"secret": secret})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "secret", "reason": "is the secret in force; rotate to a new one"}
    ]


# ------------------------------------------------------------------------------------ changing
async def test_change_then_delete(api):
    sub_id = (await _create(api)).json()["id"]
    changed = await _patch(
        api,
        sub_id,
        {
            "url": "https://dispatch.example/v2/hooks",
            "types": ["gridwatch.case.closed", "gridwatch.case.closed"],
            "filter": {"min_severity": "red"},
            "enabled": False,
        },
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["etag"] == '"2"'
    body = changed.json()
    assert (body["url"], body["types"], body["filter"], body["enabled"]) == (
        "https://dispatch.example/v2/hooks",
        ["gridwatch.case.closed"],
        {"category": None, "grid": None, "min_severity": "red"},
        False,
    )
    assert body["disabled_reason"].startswith("disabled by ")
    enabled = await _patch(api, sub_id, {"enabled": True, "filter": {}}, if_match='W/"2"')
    assert (enabled.json()["enabled"], enabled.json()["disabled_reason"]) == (True, None)
    assert enabled.json()["filter"] == {"category": None, "grid": None, "min_severity": None}
    assert (await _delete(api, sub_id, if_match='"3"')).status_code == 204
    assert (await _get(api, sub_id)).status_code == 404
    assert (await _get(api)).json()["items"] == []
    assert (await _patch(api, sub_id, {"enabled": True}, if_match="*")).status_code == 404
    # The URL is free again.
    again = await _create(api, {"url": "https://dispatch.example/v2/hooks"})
    assert again.status_code == 201, again.text


@pytest.mark.parametrize(
    ("write", "status"),
    [
        (lambda api, sub: _patch(api, sub, {"enabled": False}, if_match=None), 428),
        (lambda api, sub: _patch(api, sub, {"enabled": False}, if_match='"7"'), 412),
        (lambda api, sub: _patch(api, sub, {"enabled": False}, if_match="7"), 400),
        (lambda api, sub: _delete(api, sub, if_match=None), 428),
        (lambda api, sub: _delete(api, sub, if_match='"2"'), 412),
        (lambda api, sub: _rotate(api, sub, if_match=None), 428),
        (lambda api, sub: _rotate(api, sub, if_match='"0"'), 412),
    ],
    ids=["patch-none", "patch-stale", "patch-bad", "delete-none", "delete-stale",
         "rotate-none", "rotate-stale"],
)  # fmt: skip
async def test_writes_need_the_current_version(api, write, status):
    sub_id = (await _create(api)).json()["id"]
    response = await write(api, sub_id)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    if status == 412:
        assert response.headers["etag"] == '"1"'
        assert response.json()["current_version"] == 1
    assert (await _get(api, sub_id)).json()["version"] == 1


async def test_of_two_changes_at_one_version_exactly_one_wins(api):
    sub_id = (await _create(api)).json()["id"]
    responses = await asyncio.gather(
        _patch(api, sub_id, {"description": "first"}), _rotate(api, sub_id, if_match='"1"')
    )
    assert sorted(r.status_code for r in responses) == [200, 412]
    assert (await _get(api, sub_id)).json()["version"] == 2


async def test_a_change_to_a_taken_url_is_refused(api):
    first = (await _create(api)).json()["id"]
    second = (await _create(api, {"url": "https://dispatch.example/other"})).json()["id"]
    response = await _patch(api, second, {"url": URL})
    assert response.status_code == 409
    assert response.json()["subscription_id"] == first


async def test_a_missing_subscription_is_404(api):
    for response in (
        await _get(api, "sub_none"),
        await _patch(api, "sub_none", {"enabled": False}, if_match="*"),
        await _rotate(api, "sub_none"),
        await _delete(api, "sub_none", if_match="*"),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


# ------------------------------------------------------------------------------------ rotation
async def test_rotation_shows_the_new_secret_once_and_the_overlap(api):
    old = new_secret()
    sub_id = (await _create(api, {"secret": old})).json()["id"]
    rotated = await _rotate(api, sub_id, {"overlap_s": 3600}, if_match='"1"')
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret"].startswith("whsec_")
    assert body["secret"] != old
    assert body["version"] == 2
    assert body["previous_secret_expires_at"] is not None
    assert rotated.headers["cache-control"] == "no-store"
    fetched = await _get(api, sub_id)
    assert body["secret"] not in fetched.text
    assert old not in fetched.text
    assert fetched.json()["previous_secret_expires_at"] == body["previous_secret_expires_at"]
    # No overlap: the previous secret is retired at once; no body at all takes the defaults.
    given = new_secret()
    at_once = await _rotate(api, sub_id, {"secret": given, "overlap_s": 0})
    assert (at_once.json()["secret"], at_once.json()["previous_secret_expires_at"]) == (given, None)
    default = await api.client.post(
        f"{BASE}/{sub_id}/rotate-secret", headers=api.as_role(ADMIN) | {"If-Match": '"3"'}
    )
    assert default.status_code == 200, default.text
    assert default.json()["previous_secret_expires_at"] is not None


# ----------------------------------------------------------------------- the settings' receiver
async def test_the_settings_subscription_keeps_its_url_and_secret(api, sessions):
    async with sessions() as session, session.begin():
        row = await ensure_subscription(session=session, url=URL, secret=new_secret())
    sub_id = row.id
    shown = (await _get(api, sub_id)).json()
    assert (shown["managed_by"], shown["description"]) == ("settings", "GRIDWATCH_WEBHOOK_URL")
    refused = [
        await _patch(api, sub_id, {"url": "https://elsewhere.example/"}, if_match="*"),
        await _rotate(api, sub_id),
        await _delete(api, sub_id, if_match="*"),
    ]
    assert [r.status_code for r in refused] == [409, 409, 409]
    assert "GRIDWATCH_WEBHOOK_URL" in refused[0].json()["detail"]
    filtered = await _patch(api, sub_id, {"filter": {"min_severity": "red"}}, if_match="*")
    assert filtered.status_code == 200
    # A restart keeps the filter set through the API; a new secret in the settings rotates.
    async with sessions() as session, session.begin():
        await ensure_subscription(session=session, url=URL, secret=new_secret())
    after = (await _get(api, sub_id)).json()
    assert after["filter"]["min_severity"] == "red"
    assert after["previous_secret_expires_at"] is not None


async def test_a_new_settings_url_leaves_the_old_subscription_to_the_api(api, sessions):
    async with sessions() as session, session.begin():
        old = await ensure_subscription(session=session, url=URL, secret=new_secret())
    async with sessions() as session, session.begin():
        await ensure_subscription(session=session, url=f"{URL}/v2", secret=new_secret())
    assert (await _get(api, old.id)).json()["managed_by"] is None
    assert (await _delete(api, old.id, if_match="*")).status_code == 204


# --------------------------------------------------------------------------------------- roles
_ROUTES = [
    ("GET", BASE, Permission.WEBHOOKS_READ),
    ("GET", f"{BASE}/{{id}}", Permission.WEBHOOKS_READ),
    ("POST", BASE, Permission.WEBHOOKS_WRITE),
    ("PATCH", f"{BASE}/{{id}}", Permission.WEBHOOKS_WRITE),
    ("POST", f"{BASE}/{{id}}/rotate-secret", Permission.WEBHOOKS_WRITE),
    ("DELETE", f"{BASE}/{{id}}", Permission.WEBHOOKS_WRITE),
]


def test_admins_manage_subscriptions_and_dispatchers_read_them():
    assert ROLE_MATRIX[Permission.WEBHOOKS_READ] == {Role.ADMIN, Role.DISPATCHER}
    assert ROLE_MATRIX[Permission.WEBHOOKS_WRITE] == {Role.ADMIN}


@pytest.mark.parametrize("role", list(Role))
async def test_each_route_answers_403_to_roles_without_its_permission(api, role):
    sub_id = (await _create(api)).json()["id"]
    forbidden = []
    for method, path, permission in _ROUTES:
        url = path.replace("{id}", sub_id)
        headers = api.as_role(role) | {"If-Match": "*"}
        body = {"url": "https://dispatch.example/new"} if method == "POST" and path == BASE else {}
        response = await api.client.request(method, url, headers=headers, json=body)
        if (response.status_code == 403) != (role not in ROLE_MATRIX[permission]):
            forbidden.append((method, path, response.status_code))
        if response.status_code == 403:
            assert str(permission) in response.json()["detail"]
    assert forbidden == []


async def test_openapi_publishes_each_route_and_its_permission(api):
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    published = {
        (method.upper(), path.replace("{subscription_id}", "{id}"), operation["x-permission"])
        for path, methods in paths.items()
        if path.startswith(BASE)
        for method, operation in methods.items()
    }
    assert {(m, p, str(permission)) for m, p, permission in _ROUTES} <= published
    create = paths[BASE]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create == {"$ref": "#/components/schemas/SubscriptionCreate"}
