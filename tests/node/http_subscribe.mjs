// A subscription over HTTP with a real client, printing one JSON line per result.
// Usage: node http_subscribe.mjs apollo|sse URL TOKEN QUERY VARIABLES_JSON COUNT
//   apollo: Apollo Client's HttpLink (multipart subscriptions);
//   sse:    the graphql-sse client (distinct connections mode).
// Prints {"result": …} per result, {"error": …} on an error, then {"done": …} and exits after
// COUNT results (unsubscribing: the client closes its request) or when the server ends it.
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { createClient } from 'graphql-sse';

const [kind, url, token, query, variablesJson, countText] = process.argv.slice(2);
const variables = JSON.parse(variablesJson);
const count = Number(countText);
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const say = (line) => console.log(JSON.stringify(line));

async function* apollo() {
  const client = new ApolloClient({
    link: new HttpLink({ uri: url, headers }),
    cache: new InMemoryCache(),
  });
  const results = [];
  let wake = () => {};
  let ended = false;
  const subscription = client.subscribe({ query: gql(query), variables }).subscribe({
    next: (result) => {
      if (result.error) results.push({ error: String(result.error.message ?? result.error) });
      else results.push({ result: { data: result.data } });
      wake();
    },
    error: (error) => { results.push({ error: String(error.message ?? error) }); ended = true; wake(); },
    complete: () => { ended = true; wake(); },
  });
  try {
    while (true) {
      if (results.length) { yield results.shift(); continue; }
      if (ended) return;
      await new Promise((resolve) => { wake = resolve; });
    }
  } finally {
    subscription.unsubscribe();
  }
}

async function* sse() {
  const client = createClient({ url, headers, singleConnection: false, retryAttempts: 0 });
  try {
    for await (const result of client.iterate({ query, variables })) yield { result };
  } catch (error) {
    yield { error: String(error?.message ?? error) };
  } finally {
    client.dispose();
  }
}

let received = 0;
try {
  for await (const line of kind === 'apollo' ? apollo() : sse()) {
    say(line);
    if (line.result && ++received >= count) break;
  }
  say({ done: received >= count ? 'count' : 'ended' });
} catch (error) {
  say({ error: String(error), done: 'failed' });
}
process.exit(0);
