"""GraphQL over HTTP: the view (``view``), subscriptions streamed as multipart or Server-Sent
Events (``streams``), and GraphiQL served from the package (``graphiql``)."""
