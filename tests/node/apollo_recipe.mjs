// The README's Apollo Client recipe ("Reconnecting with a fresh token"), as written there but
// for the URL, the token source and resumeLink (left out: it starts afresh on reconnect):
// GraphQLWsLink over graphql-ws for subscriptions, HttpLink for the rest, retrying through a
// server restart. Usage: node apollo_recipe.mjs WS_URL HTTP_URL TOKEN QUERY VARIABLES_JSON
// Prints {"connected": n} on each (re)connection and {"result": …} per result; stops on stdin EOF.
import { ApolloClient, InMemoryCache, split, HttpLink, gql } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [wsUrl, httpUrl, token, query, variablesJson] = process.argv.slice(2);
const say = (line) => console.log(JSON.stringify(line));
const getFreshToken = async () => token;
let connections = 0;

const wsLink = new GraphQLWsLink(createClient({
  url: wsUrl,
  webSocketImpl: WebSocket,
  connectionParams: async () => ({ token: await getFreshToken() }),  // your refresh logic
  retryAttempts: Infinity,  // 4403 is not fatal to graphql-ws: it reconnects, with backoff
  // graphql-ws retries only after a close event by default: a refused connection while the
  // server restarts (a deploy) would end every subscription for good.
  shouldRetry: () => true,
  retryWait: (retries) =>  // exponential, but never more than ~10 s between attempts
    new Promise((resolve) => setTimeout(resolve, Math.min(2 ** retries, 10) * 1000 * (0.5 + Math.random()))),
  on: { connected: () => say({ connected: ++connections }) },
}));
const isSubscription = ({ query }) => {
  const d = getMainDefinition(query);
  return d.kind === "OperationDefinition" && d.operation === "subscription";
};
const httpLink = new HttpLink({ uri: httpUrl, headers: { Authorization: `Bearer ${token}` } });
const client = new ApolloClient({
  cache: new InMemoryCache(),
  link: split(isSubscription, wsLink, httpLink),
});

const me = await client.query({ query: gql("{ me { username } }") });
say({ query: me.data });
const subscription = client
  .subscribe({ query: gql(query), variables: JSON.parse(variablesJson) })
  .subscribe({
    next: (result) => say(result.error ? { error: String(result.error.message) } : { result: result.data }),
    error: (error) => say({ error: String(error?.message ?? error) }),
  });
process.stdin.resume();
process.stdin.on("end", () => { subscription.unsubscribe(); process.exit(0); });
