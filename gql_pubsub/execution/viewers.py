"""Which fields of a subscription's result can depend on who receives it, found once per
document.

When nothing in the selection set can read the context, subscribers of different users share
one execution and one encoding without ``shared=True``; when some fields can, the rest is still
executed once and only those fields per subscriber (``splice``).

A field is viewer-independent when it resolves without code of the project's: a plain
attribute, a model field or relation of a strawberry_django type without a ``get_queryset`` of
its own, with no permission classes, no field extensions and no directives beyond
``@include``/``@skip``; or when it says so with ``metadata=VIEWER_INDEPENDENT``. Anything else
(a resolver, a permission class, an unknown directive, ``metadata=VIEWER_DEPENDENT``, a field
whose type is an interface, a union or a strawberry_django type with a ``get_queryset``) is
resolved per viewer, with all it selects: when in doubt, it does not share.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    get_operation_ast,
    is_object_type,
    type_from_ast,
)

VIEWER_INDEPENDENT = {"gql_pubsub.viewer": "independent"}
"""``strawberry.field(metadata=VIEWER_INDEPENDENT)``: this resolver never reads who asks."""

VIEWER_DEPENDENT = {"gql_pubsub.viewer": "dependent"}
"""``strawberry.field(metadata=VIEWER_DEPENDENT)``: never share this field's value."""

_DIRECTIVES_OF_VARIABLES = frozenset({"include", "skip"})


PerViewer = dict[int, FieldNode]
"""The fields of a document whose values may depend on who receives the result, by node id
(the nodes are kept, so an id stays theirs)."""


def per_viewer_fields(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> PerViewer | None:
    """The fields whose value (with all they select) must be resolved per subscriber; all else
    is the same whoever receives it. Empty: nothing depends on the viewer. None: the shape of
    the result itself might (a type condition, an interface or union at the root, a fragment
    it cannot read), so the whole operation runs per viewer."""
    operation = get_operation_ast(document, operation_name)
    root = schema.subscription_type
    if not isinstance(operation, OperationDefinitionNode) or root is None:
        return None
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    found: PerViewer = {}
    # The root field's own resolver made the stream (it ran per subscriber); its selection set
    # runs per event.
    if not _walk(schema, root, operation.selection_set, fragments, set(), found, top=True):
        return None
    return found


def _walk(
    schema: GraphQLSchema,
    parent: Any,
    selection_set: SelectionSetNode | None,
    fragments: dict[str, Any],
    seen: set[str],
    found: PerViewer,
    *,
    top: bool = False,
) -> bool:
    """Note the per-viewer fields under ``selection_set``; False if its shape may depend on
    the viewer."""
    if selection_set is None:
        return True
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            if name.startswith("__"):
                continue  # __typename: the type's name
            field = parent.fields.get(name)
            if field is None:
                return False
            known = _directives_known(selection)
            if not top and (not known or not _field_independent(field)):
                found[id(selection)] = selection  # resolved, with what it selects, per viewer
                continue
            if not known:
                return False
            if selection.selection_set is None:
                continue
            target = get_named_type(field.type)
            if not is_object_type(target) or not _type_independent(target):
                # interfaces and unions: their resolve_type is code; a type that filters by viewer
                if top:
                    return False
                found[id(selection)] = selection
                continue
            if not _walk(schema, target, selection.selection_set, fragments, seen, found):
                return False
        elif not _directives_known(selection):
            return False
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            target = type_from_ast(schema, condition) if condition is not None else parent
            if target is not parent or not _walk(
                schema, parent, selection.selection_set, fragments, seen, found
            ):
                return False
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None:
                return False
            if name in seen:
                continue
            seen.add(name)
            target = type_from_ast(schema, fragment.type_condition)
            if target is not parent or not _walk(
                schema, parent, fragment.selection_set, fragments, seen, found
            ):
                return False
    return True


def _directives_known(selection: Any) -> bool:
    return all(d.name.value in _DIRECTIVES_OF_VARIABLES for d in selection.directives or ())


def _field_independent(field: Any) -> bool:
    definition = field.extensions.get("strawberry-definition")
    if definition is None:
        return field.resolve is None  # graphql-core's default resolver: an attribute or key
    said = (getattr(definition, "metadata", None) or {}).get("gql_pubsub.viewer")
    if said is not None:
        return bool(said == "independent")
    return (
        getattr(definition, "base_resolver", None) is None
        and not getattr(definition, "permission_classes", ())
        and not getattr(definition, "extensions", ())
        and not getattr(definition, "directives", ())
    )


def _type_independent(graphql_type: Any) -> bool:
    """Object types whose instances a strawberry_django type may filter by viewer are not."""
    definition = graphql_type.extensions.get("strawberry-definition")
    origin = getattr(definition, "origin", None)
    return origin is None or not hasattr(origin, "get_queryset")
