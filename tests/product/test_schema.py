"""The example's exported SDL is the contract: it must match the code."""

from __future__ import annotations

from strawberry.printer import print_schema

from ..services import ROOT

EXPORT = "python example/manage.py export_schema example.schema:schema --path schema/schema.graphql"


def test_schema_graphql_is_up_to_date_with_the_code() -> None:
    """A change to the API must come with the re-exported schema/schema.graphql."""
    from example.schema import schema

    exported = (ROOT / "schema" / "schema.graphql").read_text()
    assert exported.strip() == print_schema(schema).strip(), f"Out of date; run: {EXPORT}"


def test_the_contract_operations_exist() -> None:
    """The operations the example promises are all in the schema."""
    from example.schema import schema

    sdl = print_schema(schema)
    for operation in [
        "login(username: String!, password: String!): LoginPayload!",
        "me: User",
        "createCorrespondence(title: String!, participantUsernames: [String!]!): Correspondence!",
        "correspondences: [Correspondence!]!",
        "messages(correspondenceId: ID!): [Message!]!",
        "sendMessage(correspondenceId: ID!, body: String!): Message!",
        "editMessage(id: ID!, body: String!): Message!",
        "deleteMessage(id: ID!)",
        "messageAdded(correspondenceId: ID!): Message!",
        "correspondenceEvents(correspondenceId: ID!): MessageEvent!",
    ]:
        assert operation in sdl
