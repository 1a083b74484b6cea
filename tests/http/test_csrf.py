"""The view checks CSRF only for session-authenticated requests: a browser logged in through the
admin of a live server, a bearer-token client and an anonymous one, over real HTTP."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from django.conf import settings

from ..services import LiveServer, scaled


def unique(name: str) -> str:
    return f"csrf-{name}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def token(make_user: Callable[..., Any], token_for: Callable[[Any], str]) -> str:
    return token_for(make_user("http"))


# -- 1. CSRF only for session-authenticated requests --------------------------------------------

PASSWORD = "staff-password-for-the-admin"
CREATE = """
mutation ($t: String!) {
  createCorrespondence(title: $t, participantUsernames: []) { title participants { username } }
}
"""
LOGIN = "mutation ($u: String!, $p: String!) { login(username: $u, password: $p) { token } }"
CSRF_FORM_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture
def staff(make_user: Callable[..., Any]) -> Any:
    """A user who can log in to the admin (and so hold a session)."""
    return make_user("staff", password=PASSWORD, is_staff=True)


@pytest.fixture
async def browser(server: LiveServer, staff: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A real browser-like client logged in through the live server's /admin/login/ form."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(30)) as client:
        page = await client.get("/admin/login/")
        found = CSRF_FORM_FIELD.search(page.text)
        assert found is not None, page.text
        login = await client.post(
            "/admin/login/",
            data={
                "csrfmiddlewaretoken": found.group(1),
                "username": staff.username,
                "password": PASSWORD,
                "next": "/admin/",
            },
        )
        assert login.status_code == 302, login.text
        assert settings.SESSION_COOKIE_NAME in client.cookies
        yield client


async def correspondence_exists(title: str) -> bool:
    from example.chat.models import Correspondence

    return await Correspondence.objects.filter(title=title).aexists()


async def test_a_session_authenticated_post_without_the_csrf_header_is_refused(
    browser: httpx.AsyncClient,
) -> None:
    """A logged-in browser's mutation without (or with a wrong) X-CSRFToken: 403, no effect."""
    title = unique("no-csrf")
    missing = await browser.post("/graphql/", json={"query": CREATE, "variables": {"t": title}})
    wrong = await browser.post(
        "/graphql/",
        json={"query": CREATE, "variables": {"t": title}},
        headers={"X-CSRFToken": "x" * 32},
    )
    assert missing.status_code == 403, missing.text
    assert wrong.status_code == 403, wrong.text
    assert not await correspondence_exists(title)


async def test_the_csrf_refusal_tells_the_client_to_send_the_x_csrftoken_header(
    browser: httpx.AsyncClient,
) -> None:
    """A session request's 403 says why Django refused it, and to send the X-CSRFToken header."""
    response = await browser.post(
        "/graphql/", json={"query": CREATE, "variables": {"t": unique("no-csrf")}}
    )
    wrong = await browser.post(
        "/graphql/",
        json={"query": CREATE, "variables": {"t": unique("no-csrf")}},
        headers={"X-CSRFToken": "x" * 32},
    )
    assert response.status_code == wrong.status_code == 403
    assert response.json()["errors"][0]["message"] == (
        "CSRF check failed: CSRF token missing. "
        "Send the X-CSRFToken header (the csrftoken cookie's value)."
    )
    assert wrong.json()["errors"][0]["message"] == (
        "CSRF check failed: CSRF token from the 'X-Csrftoken' HTTP header incorrect. "
        "Send the X-CSRFToken header (the csrftoken cookie's value)."
    )


async def test_a_session_authenticated_post_with_the_csrf_token_succeeds(
    browser: httpx.AsyncClient, staff: Any
) -> None:
    """The same browser sending its CSRF cookie's token in X-CSRFToken runs the mutation."""
    title = unique("csrf")
    response = await browser.post(
        "/graphql/",
        json={"query": CREATE, "variables": {"t": title}},
        headers={"X-CSRFToken": browser.cookies["csrftoken"]},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": {
            "createCorrespondence": {"title": title, "participants": [{"username": staff.username}]}
        }
    }
    assert await correspondence_exists(title)


async def test_a_bearer_token_post_needs_no_csrf_token(
    server: LiveServer, browser: httpx.AsyncClient, token: str
) -> None:
    """Bearer requests run without X-CSRFToken: alone, and beside a browser's session cookie."""
    titles = [unique("bearer"), unique("bearer-and-cookie")]
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(30)) as bare:
        alone = await bare.post(
            "/graphql/",
            json={"query": CREATE, "variables": {"t": titles[0]}},
            headers={"Authorization": f"Bearer {token}"},
        )
    with_cookie = await browser.post(
        "/graphql/",
        json={"query": CREATE, "variables": {"t": titles[1]}},
        headers={"Authorization": f"Bearer {token}"},
    )
    for response, title in zip([alone, with_cookie], titles, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["data"]["createCorrespondence"]["title"] == title
        assert await correspondence_exists(title)


async def test_an_anonymous_post_needs_no_csrf_token(server: LiveServer, staff: Any) -> None:
    """Anonymous mutations run without X-CSRFToken, even from a client holding a CSRF cookie."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=scaled(30)) as anonymous:
        await anonymous.get("/admin/login/")  # a visitor with a CSRF cookie, not logged in
        assert "csrftoken" in anonymous.cookies
        response = await anonymous.post(
            "/graphql/", json={"query": LOGIN, "variables": {"u": staff.username, "p": PASSWORD}}
        )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["login"]["token"]
