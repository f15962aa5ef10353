// The web chat at GET / in a real browser: Debian's chromium, headless, driven by npm's
// puppeteer-core, against `specula serve` with the trained demo pair and an API key. The page must
// take the key, stream a reply equal to the API's own answer, mark each token as the response's
// statistics count it, and decode plainly once speculation is switched off. Leaves a screenshot.
//   node webchat_test.mjs SPECULA_BIN WORK_DIR SETUP_DIR   (SETUP_DIR: webchat_setup.sh's output)
// Environment: SPECULA_SCREENSHOT, a second path to write the screenshot to (docs/img/...).
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { test, after } from 'node:test';
import path from 'node:path';

import { startServer } from './serve.mjs';

const [bin, work, setup] = process.argv.slice(2);
const require = createRequire(path.resolve(setup, 'node_modules', 'noop.js'));
const puppeteer = require('puppeteer-core');

rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const KEY = 'sk-webchat-test';
const MAX_TOKENS = 40;

const server = await startServer(bin, [
  '-m', path.join(setup, 'demo/target'), '-md', path.join(setup, 'demo/assistant'), '-c', '1024',
  // fixed K: whether "auto" drafts depends on this machine's timings
  '--draft-policy', 'fixed', '--api-key', KEY], { timeoutMs: 30000 });
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
after(async () => {
  await browser.close();
  server.kill('SIGTERM');
});

// The API's own answer to a conversation (not streamed), for comparison with the page.
async function apiAnswer(messages, speculative) {
  const r = await fetch(`${server.base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ messages, max_tokens: MAX_TOKENS, temperature: 0, speculative }),
  });
  assert.equal(r.status, 200);
  return (await r.json()).choices[0].message.content;
}

// Sends a message from the page and returns the finished reply's data and marks.
async function ask(page, text, index) {
  await page.type('#input', text);
  await page.click('#send');
  const done = `.msg.assistant:nth-of-type(${2 * index + 2})[data-done="1"]`;
  await page.waitForSelector(done, { timeout: 240000 });
  return page.$eval(done, (el) => ({
    ...el.dataset,
    draftSpans: el.querySelectorAll('.tok.draft').length,
    marked: Array.from(el.querySelectorAll('.tok'), (s) => s.textContent).join(''),
  }));
}

test('the page streams replies, marks accepted drafts as the statistics count them', async () => {
  const raw = await fetch(`${server.base}/`);
  assert.equal(raw.status, 200, 'the page needs no key');
  assert.match(raw.headers.get('content-type'), /^text\/html/);
  const policy = raw.headers.get('content-security-policy');
  assert.match(policy, /default-src 'none'/);
  assert.match(policy, /script-src 'self';/, 'no inline script may run');
  assert.match(policy, /frame-ancestors 'none'/);
  const script = await fetch(`${server.base}/webchat.js`);
  assert.equal(script.status, 200, 'the script needs no key either');
  assert.match(script.headers.get('content-type'), /^text\/javascript/);
  assert.equal((await fetch(`${server.base}/v1/models`)).status, 401);

  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 720 });
  const external = [];
  page.on('request', (r) => { if (!r.url().startsWith(server.base)) external.push(r.url()); });
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`${server.base}/`, { waitUntil: 'load' });

  // Without the key the page says so; with it, it names the model and its drafter.
  await page.waitForFunction(() => /API key/.test(document.getElementById('model').textContent));
  await page.type('#api-key', KEY);
  await page.click('#save-key');
  await page.waitForSelector('#model[data-ready="1"]');
  assert.match(await page.$eval('#model', (e) => e.textContent), /target · with an MTP drafter/);

  await page.$eval('#temperature', (e) => { e.value = '0'; });
  await page.$eval('#max-tokens', (e, n) => { e.value = String(n); }, MAX_TOKENS);
  await page.$eval('#draft-max', (e) => { e.value = '3'; });
  assert.equal(await page.$eval('#speculative', (e) => e.checked), true);

  const question = 'How do I install a package with apt?';
  const first = await ask(page, question, 0);
  assert.equal(first.error, undefined, first.error);
  assert.equal(first.speculative, '1');
  assert.ok(Number(first.chunks) > 1, `the reply came in ${first.chunks} chunk(s), not streamed`);
  assert.equal(first.reply, await apiAnswer([{ role: 'user', content: question }], true));
  assert.equal(first.marked, first.reply, 'the marked tokens spell the reply');
  // Every generated token is marked once, and the draft marks are the response's accepted
  // prediction tokens: at most the drafts the target accepted (those after the end are cut).
  assert.equal(Number(first.tokens), Number(first.completionTokens));
  assert.equal(Number(first.drafts), Number(first.acceptedPredictionTokens));
  assert.ok(Number(first.drafts) > 0, 'the demo pair accepts drafts');
  assert.ok(Number(first.drafts) <= Number(first.specAccepted));
  assert.ok(Number(first.drafts) > Number(first.specAccepted) - 3);
  assert.ok(first.draftSpans > 0 && first.draftSpans <= Number(first.drafts));
  assert.match(await page.$eval('#live', (e) => e.textContent),
               /tok\/s · \d+% from drafts · acceptance \d+%/);

  // Speculation off: the same conversation goes on decoded plainly; greedy text is unchanged.
  await page.click('#speculative');
  const follow = 'And how do I remove it?';
  const second = await ask(page, follow, 1);
  assert.equal(second.error, undefined, second.error);
  assert.equal(second.speculative, '0');
  const conversation = [{ role: 'user', content: question },
                        { role: 'assistant', content: first.reply },
                        { role: 'user', content: follow }];
  assert.equal(second.reply, await apiAnswer(conversation, false));
  assert.equal(second.reply, await apiAnswer(conversation, true));
  assert.equal(Number(second.tokens), Number(second.completionTokens));
  assert.equal(Number(second.drafts), 0);
  assert.equal(second.draftSpans, 0);
  assert.match(await page.$eval('.msg.assistant:nth-of-type(4) .stats', (e) => e.textContent),
               /plain decoding/);

  assert.deepEqual(external, [], 'the page fetched something outside the server');
  assert.deepEqual(problems, []);
  const shot = path.join(work, 'webchat.png');
  await page.screenshot({ path: shot });
  if (process.env.SPECULA_SCREENSHOT) copyFileSync(shot, process.env.SPECULA_SCREENSHOT);
});
