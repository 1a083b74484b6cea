"""The session, whatever the transport: how a connection ends (``close_codes``), what operations
need of their connection (``peer``), the project's hooks (``hooks``), where operations start and
end (``operations``) and how a subscription joins its fan-out group (``grouping``)."""
