// One GraphQL subscription through the real graphql-ws client, resumed across
// reconnects by cursor: the README's "Resuming after a reconnect" recipe. `npm ci` here first, then:
//   node resume_client.mjs --url ws://127.0.0.1:PORT/graphql/ --token TOKEN \
//     --query 'subscription ($room: ID!) { messageAdded(room: $room) { id text } }' \
//     --variables '{"room": "1"}' [--count N] [--no-resume]
// Keep stdin open (a pipe): the client stops when it closes.
// Prints one JSON line per event on stdout:
//   {"connected": true}   each (re)connection acknowledged by the server
//   {"live": true}        cursor-only `next`: the subscription is live (after any replay)
//   {"refetch": true}     REFETCH: history no longer covers our cursor, reload state
//   {"data": ...}         an event (with "errors" beside it if the server sent any)
//   {"error": ...}        the subscription failed for good (exit code 1)
//   {"complete": true}    the server completed the subscription (exit code 0)
// Runs until stdin closes, SIGTERM/SIGINT, or --count data lines were printed.
import { parseArgs } from 'node:util';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    query: { type: 'string' },
    variables: { type: 'string', default: '{}' },
    count: { type: 'string', default: '0' }, // 0: no limit
    'no-resume': { type: 'boolean', default: false },
  },
});
const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const limit = Number(opt.count);
let received = 0;
let stopping = false;

const client = createClient({
  url: opt.url,
  webSocketImpl: WebSocket,
  connectionParams: { token: opt.token },
  retryAttempts: Infinity,
  shouldRetry: () => true,
  retryWait: () => new Promise((resolve) => setTimeout(resolve, 200)),
  on: { connected: () => print({ connected: true }) },
});

// The recipe: graphql-ws re-sends this same object on every reconnect, so
// keeping `extensions.after` up to date in place makes reconnects resume.
const payload = { query: opt.query, variables: JSON.parse(opt.variables) };
if (!opt['no-resume']) payload.extensions = { after: null };

const unsubscribe = client.subscribe(payload, {
  next(result) {
    const cursor = result.extensions?.cursor;
    if (payload.extensions && cursor !== undefined) payload.extensions.after = cursor;
    if (result.errors?.some((e) => e.extensions?.code === 'REFETCH')) print({ refetch: true });
    else if (!('data' in result)) print({ live: true });
    else {
      print(result.errors ? { data: result.data, errors: result.errors } : { data: result.data });
      if (limit > 0 && ++received >= limit) shutdown(0);
    }
  },
  error(err) {
    if (stopping) return;
    const why = Array.isArray(err) ? err // GraphQL errors
      : err?.code !== undefined ? { code: err.code, reason: err.reason } // close event
      : String(err?.message ?? err);
    print({ error: why });
    shutdown(1);
  },
  complete() {
    if (stopping) return; // our own unsubscribe() completes the sink too
    print({ complete: true });
    shutdown(0);
  },
});

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  unsubscribe();
  // dispose() waits for a pending connection; don't hang on a server that is down.
  await Promise.race([client.dispose().catch(() => {}), new Promise((r) => setTimeout(r, 1000))]);
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.stdin.on('end', () => shutdown(0)).on('close', () => shutdown(0)).resume();
