// N subscribers of messageAdded(room) over WebSocket (graphql-transport-ws) or over HTTP
// (graphql-sse's event stream, fetch): prints {"ready": n} once all are subscribed (the server
// has them once its Redis subscription is live: the driver checks), then counts deliveries and
// prints {"deliveries", "seconds", "per_second"} when EXPECTED arrived (or TIMEOUT passed).
// Usage: node http_loadgen.mjs ws|sse BASE_URL N ROOM EXPECTED TIMEOUT_S
import WebSocket from 'ws';

const [kind, base, nText, room, expectedText, timeoutText] = process.argv.slice(2);
const n = Number(nText), expected = Number(expectedText);
const query = 'subscription ($room: String!) { messageAdded(room: $room) { id room body sentAt } }';
const say = (line) => console.log(JSON.stringify(line));
let received = 0, first = 0, last = 0, subscribed = 0;
const delivered = () => {
  const now = performance.now();
  if (!first) first = now;
  last = now;
  if (++received === expected) finish('expected');
};
const finish = (why) => {
  const seconds = (last - first) / 1000;
  say({ done: why, deliveries: received, seconds, per_second: seconds ? received / seconds : null });
  process.exit(0);
};
setTimeout(() => finish('timeout'), Number(timeoutText) * 1000);

function websocket() {
  const socket = new WebSocket(`${base.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
  socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { token: 'bench' } })));
  socket.on('message', (raw) => {
    const text = raw.toString();
    if (text.startsWith('{"id"')) return delivered();  // a next frame
    const message = JSON.parse(text);
    if (message.type === 'connection_ack') {
      socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query, variables: { room } } }));
      if (++subscribed === n) say({ ready: n });
    } else if (message.type === 'ping') socket.send('{"type":"pong"}');
  });
}

async function eventStream() {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream', Authorization: 'Bearer bench' },
    body: JSON.stringify({ query, variables: { room } }),
  });
  if (++subscribed === n) say({ ready: n });
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = buffer.indexOf('\r\n\r\n')) >= 0) {
      if (buffer.startsWith('event: next')) delivered();
      buffer = buffer.slice(end + 4);
    }
  }
}

for (let i = 0; i < n; i++) (kind === 'ws' ? websocket : eventStream)();
