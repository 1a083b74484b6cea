// graphql-http's GraphQL-over-HTTP audit (serverAudits) against a running server's endpoint.
// Usage: node http_audit.mjs http://127.0.0.1:PORT/graphql/
// Prints one JSON line per audit: {"id", "name", "status", "reason"?}.
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
for (const audit of serverAudits({ url })) {
  const result = await audit.fn();
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') line.reason = result.reason;
  console.log(JSON.stringify(line));
}
