"""GraphQL over HTTP's application/graphql-response+json: answered with it when the client
prefers it; a request that was not executed (syntax, validation, variables) then gets 400 and
no ``data``; application/json keeps its 200s. Through Django's whole stack (the test client)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient, override_settings

GRAPHQL_RESPONSE = "application/graphql-response+json"


async def post(query: str, accept: str, variables: dict[str, Any] | None = None) -> Any:
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        return await AsyncClient().post(
            "/graphql/",
            {"query": query, "variables": variables},
            content_type="application/json",
            headers={"Accept": accept},
        )


REQUEST_ERRORS = [
    pytest.param("{", None, "Syntax Error", id="syntax"),
    pytest.param("{ nope }", None, "Cannot query field 'nope'", id="validation"),
    pytest.param(
        "query ($c: ID!) { messages(correspondenceId: $c) { id } }",
        {"c": {"not": "an id"}},
        "Variable '$c' has invalid value",
        id="variables",
    ),
]


@pytest.mark.parametrize(("query", "variables", "message"), REQUEST_ERRORS)
async def test_a_request_error_is_400_without_data_under_graphql_response_json(
    query: str, variables: dict[str, Any] | None, message: str
) -> None:
    response = await post(query, GRAPHQL_RESPONSE, variables)
    assert response.status_code == 400
    assert response["Content-Type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
    body = response.json()
    assert "data" not in body
    assert message in body["errors"][0]["message"]


@pytest.mark.parametrize(("query", "variables", "message"), REQUEST_ERRORS)
async def test_application_json_keeps_200_and_a_null_data_for_the_same_errors(
    query: str, variables: dict[str, Any] | None, message: str
) -> None:
    for accept in ("application/json", "*/*", f"{GRAPHQL_RESPONSE};q=0.5, application/json"):
        response = await post(query, accept, variables)
        assert response.status_code == 200, accept
        assert response["Content-Type"] == "application/json", accept
        body = response.json()
        assert body["data"] is None
        assert message in body["errors"][0]["message"]


async def test_an_executed_request_is_200_with_data_under_graphql_response_json() -> None:
    """Field errors happen during execution: 200, and the data entry (null here) is there."""
    ok = await post("{ __typename }", f"{GRAPHQL_RESPONSE}, application/json;q=0.9")
    assert (ok.status_code, ok.json()) == (200, {"data": {"__typename": "Query"}})
    assert ok["Content-Type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
    failed = await post("{ correspondences { id } }", GRAPHQL_RESPONSE)
    assert failed.status_code == 200
    body = failed.json()
    assert body["data"] is None
    assert body["errors"][0]["path"] == ["correspondences"]
