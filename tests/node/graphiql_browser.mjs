// GraphiQL in headless Chromium (the system's, driven by playwright-core): the page renders
// with no request leaving 127.0.0.1, a query runs, and a subscription receives an event.
// Usage: node graphiql_browser.mjs CHROMIUM URL TOKEN QUERY SUBSCRIPTION EXPECTED
// Prints one JSON line per step; after {"step":"subscribed"} it waits until the subscription's
// result shows EXPECTED (the test publishes it), then prints {"step":"received"} and exits.
import { chromium } from 'playwright-core';

const [executablePath, url, token, query, subscription, expected] = process.argv.slice(2);
const say = (line) => console.log(JSON.stringify(line));
const local = (address) => {
  const { protocol, hostname } = new URL(address);
  return ['data:', 'blob:'].includes(protocol) || ['127.0.0.1', 'localhost'].includes(hostname);
};

const browser = await chromium.launch({
  executablePath,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const offsite = [];
const problems = [];
try {
  const page = await browser.newPage();
  await page.route('**/*', (route) => {
    if (local(route.request().url())) return route.continue();
    offsite.push(route.request().url());
    return route.abort();
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => problems.push(`failed: ${request.url()}`));

  const headers = JSON.stringify({ Authorization: `Bearer ${token}` });
  const open = async (document) => {
    // The page decodes its parameters with decodeURIComponent: no '+' for spaces.
    const params = `q=${encodeURIComponent(document)}&headers=${encodeURIComponent(headers)}`;
    await page.goto(`${url}?${params}`);
    await page.waitForSelector('.graphiql-execute-button', { timeout: 30000 });
  };
  // The result pane's text, line by line (CodeMirror's lines, without its gutters).
  const shown = () => [...document.querySelectorAll('.result-window .CodeMirror-line')]
    .map((line) => line.textContent.replace(/\u200b/g, '').replace(/\u00a0/g, ' ')).join('\n');
  const result = () => page.evaluate(shown);
  const showing = (text) => page.waitForFunction(
    `(${shown})().includes(${JSON.stringify(text)})`, null, { timeout: 30000 },
  );

  await open(query);
  say({ step: 'rendered', title: await page.title() });
  await page.click('.graphiql-execute-button');
  await showing('"data"');
  say({ step: 'queried', result: await result() });

  await open(subscription);
  await page.click('.graphiql-execute-button');
  say({ step: 'subscribed' });
  await showing(expected);
  say({ step: 'received', result: await result() });
} catch (error) {
  say({ step: 'failed', error: String(error) });
} finally {
  say({ step: 'done', offsite, problems });
  await browser.close();
}
