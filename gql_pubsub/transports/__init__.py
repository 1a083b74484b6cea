"""The transports: graphql-transport-ws over a WebSocket (``websocket``), and GraphQL over HTTP
with its multipart and Server-Sent Events streams (``http``)."""
