"""Running operations: the engine, sole owner of graphql-core's internals (``engine``), what a
client asks for (``request``) and what resolvers see (``context``), the fan-out of one execution
to a group of subscribers (``fanout``, ``catch_up``), the per-viewer fields (``viewers``,
``splice``) and the limits on an operation (``limits``)."""
