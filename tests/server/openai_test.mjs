// Integration tests of `specula serve`: the real binary on a free loopback port, driven by the
// official `openai` npm client (streaming and not) and by raw HTTP for the error cases.
//   node openai_test.mjs SPECULA_BIN WORK_DIR OPENAI_NODE_MODULES
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdirSync, rmSync } from 'node:fs';
import { test, after } from 'node:test';
import path from 'node:path';

import { startServer as serve, killServers } from './serve.mjs';

const [bin, work, modules] = process.argv.slice(2);
const require = createRequire(path.resolve(modules, 'noop.js'));
const OpenAI = require('openai');

rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const model = path.join(work, 'target');
const draft = path.join(work, 'assistant');
execFileSync(bin, ['make-random', model, '--preset', 'e2b-small', '--assistant', draft]);

const KEY = 'sk-test-123';
const CONTEXT = 256;

// `specula serve -m MODEL -c CONTEXT EXTRA...`
const startServer = (extra) => serve(bin, ['-m', model, '-c', String(CONTEXT), ...extra]);
after(killServers);

// A fixed draft length: the default policy ("auto") chooses K from measured pass times, so on a
// machine where this tiny target is compute-bound at batch 4 it may rightly not draft at all, and
// the assertions below on drafted and accepted tokens would depend on the machine. One-token
// lookup matches: the short test prompts and outputs rarely repeat a whole bigram.
const main = await startServer(['-md', draft, '--draft-policy', 'fixed', '--parallel', '4', '--queue',
                                '64', '--api-key', KEY, '--lookup-min', '1']);
const client = new OpenAI({ apiKey: KEY, baseURL: `${main.base}/v1`, maxRetries: 0 });

async function metrics(server) {
  const r = await fetch(`${server.base}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(r.status, 200);
  const out = {};
  for (const line of (await r.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

async function complete(params) {
  if (!params.stream) return client.completions.create(params);
  let text = '';
  let last;
  for await (const chunk of await client.completions.create(params)) {
    if (chunk.choices.length) text += chunk.choices[0].text;
    last = chunk;
  }
  return { choices: [{ text, finish_reason: last.choices[0].finish_reason }], usage: last.usage, speculative: last.speculative };
}

const prompts = ['The quick brown fox', 'Once upon a time', 'hello world', 'In 1492', 'def main():',
                 'Dear diary,', 'x = 1 + ', 'Lorem ipsum dolor'];

test('greedy completion equals `specula generate` and streams the same text', async () => {
  const cli = JSON.parse(execFileSync(bin, ['generate', '-m', model, '-p', prompts[0], '-n', '24', '--temp', '0', '--json']));
  const r = await client.completions.create({ model: 'target', prompt: prompts[0], max_tokens: 24, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].text, cli.text);
  assert.equal(r.usage.prompt_tokens, cli.prompt_ids.length);
  assert.equal(r.usage.completion_tokens, cli.ids.length);
  assert.equal(r.choices[0].finish_reason, cli.stop_reason === 'stop' ? 'stop' : 'length');
  assert.equal(r.speculative.enabled, true);
  assert.equal(r.speculative.draft_max, 3);
  const s = await complete({ model: 'target', prompt: prompts[0], max_tokens: 24, temperature: 0, stream: true });
  assert.equal(s.choices[0].text, cli.text);
  assert.equal(s.usage.completion_tokens, cli.ids.length);
  const plain = await client.completions.create({ model: 'target', prompt: prompts[0], max_tokens: 24, temperature: 0, speculative: false });
  assert.equal(plain.choices[0].text, cli.text);
  assert.deepEqual(plain.speculative, { enabled: false });
});

test('chat completion equals `specula generate --chat`, streaming and not', async () => {
  const cli = JSON.parse(execFileSync(bin, ['generate', '-m', model, '-p', 'Tell me a story', '--chat', '-n', '20', '--temp', '0', '--json']));
  const messages = [{ role: 'user', content: 'Tell me a story' }];
  const r = await client.chat.completions.create({ model: 'target', messages, max_tokens: 20, temperature: 0, draft_max: 5 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, cli.text);
  assert.equal(r.speculative.draft_max, 5);
  let text = '';
  let role;
  let finish;
  const stream = await client.chat.completions.create({ model: 'target', messages, max_tokens: 20, temperature: 0, stream: true,
                                                        stream_options: { include_usage: true } });
  let usage;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    if (!chunk.choices.length) continue;
    role ??= chunk.choices[0].delta.role;
    text += chunk.choices[0].delta.content ?? '';
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  assert.equal(role, 'assistant');
  assert.equal(text, cli.text);
  assert.ok(finish === 'stop' || finish === 'length');
  assert.equal(usage.completion_tokens, r.usage.completion_tokens);
});

test('the next turn of a chat resumes the cached prefix and answers as a cold server', async () => {
  const cold = await startServer(['-md', draft, '--cache-ram', '0', '--api-key', KEY]);
  const coldClient = new OpenAI({ apiKey: KEY, baseURL: `${cold.base}/v1`, maxRetries: 0 });
  const before = await metrics(main);
  const ask = async (c, messages) => c.chat.completions.create({ model: 'target', messages, max_tokens: 8, temperature: 0 });
  const turn1 = [{ role: 'user', content: 'Hi there.' }];
  const r1 = await ask(client, turn1);
  const turn2 = [...turn1, { role: 'assistant', content: r1.choices[0].message.content },
                 { role: 'user', content: 'And then?' }];
  const warm = await ask(client, turn2);
  const again = await ask(client, turn2);  // the same request again: all but its last token cached
  const fresh = await ask(coldClient, turn2);
  assert.equal(warm.choices[0].message.content, fresh.choices[0].message.content);
  assert.equal(again.choices[0].message.content, fresh.choices[0].message.content);
  assert.equal(fresh.usage.prompt_tokens_details.cached_tokens, 0);
  assert.ok(warm.usage.prompt_tokens_details.cached_tokens >= r1.usage.prompt_tokens,
            JSON.stringify(warm.usage));
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, again.usage.prompt_tokens - 1);
  const after_ = await metrics(main);
  const hits = after_.specula_prompt_cache_hit_tokens_total - before.specula_prompt_cache_hit_tokens_total;
  const cached = (r) => r.usage.prompt_tokens_details.cached_tokens;
  assert.equal(hits, cached(r1) + cached(warm) + cached(again));  // r1 shares the chat template's start
  assert.ok(after_.specula_prompt_cache_bytes > 0);
  assert.equal(warm.timings.cache_n, cached(warm));
  assert.equal(warm.timings.prompt_n + warm.timings.cache_n, warm.usage.prompt_tokens);
  assert.equal(warm.timings.predicted_n, warm.usage.completion_tokens);
  // Every finished request lands in the latency histograms; each has a +Inf bucket of that count.
  for (const h of ['specula_time_to_first_token_seconds', 'specula_request_duration_seconds']) {
    assert.equal(after_[`${h}_count`] - before[`${h}_count`], 3, h);
    assert.equal(after_[`${h}_bucket{le="+Inf"}`], after_[`${h}_count`], h);
  }
  assert.equal((await metrics(cold)).specula_prompt_cache_bytes, 0);
  // Concurrent requests that share the cached conversation resume it together, batched, and each
  // answers as the cold server does.
  const branches = ['Why?', 'How?', 'When?', 'Where?', 'Who?', 'Which one?'].map(
    (q) => [...turn1, { role: 'assistant', content: r1.choices[0].message.content }, { role: 'user', content: q }]);
  const together = await Promise.all(branches.map((m) => ask(client, m)));
  for (let i = 0; i < branches.length; ++i) {
    const alone = await ask(coldClient, branches[i]);
    assert.equal(together[i].choices[0].message.content, alone.choices[0].message.content, `branch ${i}`);
    assert.ok(cached(together[i]) > 0, `branch ${i}`);
  }
  cold.kill('SIGTERM');
});

test('seeded sampling is reproducible and stop strings cut the text', async () => {
  const params = { model: 'target', prompt: prompts[1], max_tokens: 30, temperature: 0.9, top_p: 0.95, seed: 42 };
  const a = await client.completions.create(params);
  const b = await client.completions.create({ ...params, stream: false });
  assert.equal(a.choices[0].text, b.choices[0].text);
  const full = (await client.completions.create({ model: 'target', prompt: prompts[2], max_tokens: 30, temperature: 0 })).choices[0].text;
  assert.ok(full.length > 6, full);
  const stop = full.slice(3, 5);
  const cut = full.slice(0, full.indexOf(stop));
  for (const stream of [false, true]) {
    const r = await complete({ model: 'target', prompt: prompts[2], max_tokens: 30, temperature: 0, stop: [stop], stream });
    assert.equal(r.choices[0].text, cut);
    assert.equal(r.choices[0].finish_reason, 'stop');
  }
});

// A stream's events, as parsed JSON (without [DONE]).
async function streamEvents(server, route, body) {
  const r = await fetch(`${server.base}${route}`, {
    method: 'POST', body: JSON.stringify({ ...body, stream: true }),
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
  });
  assert.equal(r.status, 200);
  return (await r.text()).split('\n\n').filter((e) => e.startsWith('data: {'))
    .map((e) => JSON.parse(e.slice(6)));
}

test('token_origins lists every streamed token with its text and origin; usage counts the drafts', async () => {
  const full = (await client.completions.create({ model: 'target', prompt: prompts[3], max_tokens: 30, temperature: 0 })).choices[0].text;
  const stop = full.slice(4, 6);
  const cases = [
    ['/v1/chat/completions', { messages: [{ role: 'user', content: 'Count to ten' }], max_tokens: 24, temperature: 0, draft_max: 4 }],
    ['/v1/chat/completions', { messages: [{ role: 'user', content: 'Count to ten' }], max_tokens: 24, temperature: 0, speculative: false }],
    ['/v1/completions', { prompt: prompts[3], max_tokens: 30, temperature: 0.8, seed: 5 }],
    ['/v1/completions', { prompt: prompts[3], max_tokens: 30, temperature: 0, stop: [stop] }],
  ];
  for (const [route, body] of cases) {
    const events = await streamEvents(main, route, { ...body, token_origins: true });
    let text = '', marked = '', tokens = 0, drafts = 0;
    for (const e of events) {
      const c = e.choices[0];
      text += c.delta ? (c.delta.content ?? '') : c.text;
      for (const o of c.token_origins ?? []) {
        marked += o.text;
        if (o.draft === undefined) continue;  // held-back text at the end, not a token
        ++tokens;
        drafts += o.draft;
      }
    }
    const last = events.at(-1);
    const what = `${route} ${JSON.stringify(body)}`;
    assert.equal(marked, text, what);
    assert.equal(tokens, last.usage.completion_tokens, what);
    const details = last.usage.completion_tokens_details;
    assert.equal(drafts, details.accepted_prediction_tokens, what);
    if (last.speculative.enabled) {
      assert.ok(drafts <= last.speculative.accepted, what);
      assert.equal(details.rejected_prediction_tokens, last.speculative.drafted - last.speculative.accepted, what);
    } else {
      assert.equal(drafts, 0, what);
      assert.equal(details.rejected_prediction_tokens, 0, what);
    }
    if (body.stop) assert.equal(text, full.slice(0, full.indexOf(stop)), what);
    // Without the flag no chunk carries the field, and the text is the same.
    const plain = await streamEvents(main, route, body);
    assert.ok(plain.every((e) => e.choices.every((c) => c.token_origins === undefined)), what);
    if (body.temperature === 0 || body.seed !== undefined) {
      assert.equal(plain.map((e) => e.choices[0].delta?.content ?? e.choices[0].text ?? '').join(''), text, what);
    }
  }
});

test('with --cache-ram 0 each slot resumes its own last conversation in place; logs and metrics count it', async () => {
  // Three turns of a random model's answers re-tokenize past the other tests' 256 positions.
  const slots = await serve(bin, ['-m', model, '-c', '1024', '-md', draft, '--cache-ram', '0', '--parallel', '2',
                                  '--api-key', KEY]);
  const slotClient = new OpenAI({ apiKey: KEY, baseURL: `${slots.base}/v1`, maxRetries: 0 });
  const cached = (r) => r.usage.prompt_tokens_details.cached_tokens;
  const all = [];
  // cache_prompt: false (llama.cpp's field) resumes nothing: the cold reference, on this server.
  const ask = async (messages, cache_prompt = true) => {
    const r = await slotClient.chat.completions.create({ model: 'target', messages, max_tokens: 8, temperature: 0, cache_prompt });
    all.push(r);
    return r;
  };
  const text = (r) => r.choices[0].message.content;
  const turn = (history, answer, q) => [...history, { role: 'assistant', content: text(answer) }, { role: 'user', content: q }];
  // Two conversations alternate over the two slots; each turn resumes its own conversation.
  const a1m = [{ role: 'user', content: 'Tell me about boats.' }], b1m = [{ role: 'user', content: 'Rivers, please.' }];
  const a1 = await ask(a1m), b1 = await ask(b1m);
  const a2m = turn(a1m, a1, 'And sails?'), b2m = turn(b1m, b1, 'And deltas?');
  const a2 = await ask(a2m), b2 = await ask(b2m);
  assert.ok(cached(a2) >= a1.usage.prompt_tokens, `A's turn 2 resumed ${cached(a2)} tokens`);
  assert.ok(cached(b2) >= b1.usage.prompt_tokens, `B's turn 2 resumed ${cached(b2)} tokens`);
  // A third conversation takes the least recently used slot (A's); B goes on, A starts over.
  const c1 = await ask([{ role: 'user', content: 'Trains!' }]);
  const b3m = turn(b2m, b2, 'Why?'), a3m = turn(a2m, a2, 'Why?');
  const b3 = await ask(b3m), a3 = await ask(a3m);
  assert.ok(cached(b3) >= b2.usage.prompt_tokens, `B's turn 3 resumed ${cached(b3)} tokens`);
  assert.ok(cached(a3) < a1.usage.prompt_tokens, `A's slot was recycled, yet ${cached(a3)} tokens resumed`);
  for (const [m, r] of [[a2m, a2], [b2m, b2], [b3m, b3], [a3m, a3]]) {
    const coldAnswer = await ask(m, false);
    assert.equal(cached(coldAnswer), 0);
    assert.equal(text(r), text(coldAnswer));
  }
  const m = await metrics(slots);
  assert.equal(m.specula_prompt_cache_bytes, 0);
  assert.equal(m.specula_prompt_cache_hit_tokens_total, all.reduce((n, r) => n + cached(r), 0));
  assert.equal(m.specula_prompt_cache_miss_tokens_total,
               all.reduce((n, r) => n + r.usage.prompt_tokens - cached(r), 0));
  // Inter-token latency: one observation per generated token after the first of each request.
  const gaps = all.reduce((n, r) => n + r.usage.completion_tokens - 1, 0);
  assert.equal(m.specula_inter_token_latency_seconds_count, gaps);
  assert.equal(m['specula_inter_token_latency_seconds_bucket{le="+Inf"}'], gaps);
  // One log line per request: its id, prompt and cached tokens, generated tokens, duration, drafts.
  slots.kill('SIGTERM');
  await slots.exited;
  for (const r of all) {
    const line = slots.log.split('\n').find((l) => l.includes(r.id));
    assert.ok(line, `no log line for ${r.id}`);
    assert.match(line, new RegExp(`prompt ${r.usage.prompt_tokens} \\(cached ${cached(r)}\\) generated ` +
                                  `${r.usage.completion_tokens} in \\d+\\.\\d+ s, drafts accepted \\d+/\\d+, stop \\w+`));
  }
});

test('a small --cache-ram evicts the least recently used conversation and stays within its bound', async () => {
  const small = await startServer(['-md', draft, '--cache-ram', '1', '--parallel', '1']);
  const smallClient = new OpenAI({ apiKey: 'none', baseURL: `${small.base}/v1`, maxRetries: 0 });
  const ask = (content) => smallClient.chat.completions.create(
    { model: 'target', messages: [{ role: 'user', content }], max_tokens: 8, temperature: 0 });
  const cached = (r) => r.usage.prompt_tokens_details.cached_tokens;
  const filler = 'with every detail you know about its history, its uses, its parts and its people';
  const topics = ['Cats', 'Boats', 'Trains', 'Rivers'].map((t) => `${t}: tell me about them ${filler}.`);
  const bytes = async () => {
    const r = await fetch(`${small.base}/metrics`);
    const line = (await r.text()).split('\n').find((l) => l.startsWith('specula_prompt_cache_bytes '));
    return Number(line.split(' ')[1]);
  };
  const first = await ask(topics[0]);
  const warm = await ask(topics[0]);
  assert.equal(cached(warm), warm.usage.prompt_tokens - 1, 'a repeat resumes all but the last token');
  assert.equal(warm.choices[0].message.content, first.choices[0].message.content);
  for (const t of topics.slice(1)) {
    await ask(t);
    const b = await bytes();
    assert.ok(b > 0 && b <= 1 << 20, `the cache holds ${b} bytes`);
  }
  const evicted = await ask(topics[0]);
  assert.ok(cached(evicted) < 16, `the first conversation was evicted, yet ${cached(evicted)} tokens were cached`);
  assert.equal(evicted.choices[0].message.content, first.choices[0].message.content);
  small.kill('SIGTERM');
});

test('16 concurrent clients x 3 requests each get their single-request output; metrics add up', async () => {
  const jobs = [];
  for (let c = 0; c < 16; ++c) {
    for (let k = 0; k < 3; ++k) {
      const i = (c * 3 + k) % prompts.length;
      // Each request may name its drafter; the server's default (the assistant) otherwise.
      const drafter = [undefined, 'lookup', 'hybrid', 'model', 'tree'][(c + 2 * k) % 5];
      jobs.push({ prompt: prompts[i], max_tokens: 8 + (i % 4) * 6, speculative: (c + k) % 3 !== 0,
                  draft_max: 1 + ((c + k) % 4), stream: (c + k) % 2 === 0, ...(drafter ? { drafter } : {}) });
    }
  }
  // Reference: each distinct request alone.
  const expected = new Map();
  for (const j of jobs) {
    const key = `${j.prompt}|${j.max_tokens}`;
    if (!expected.has(key)) {
      expected.set(key, (await client.completions.create({ model: 'target', prompt: j.prompt, max_tokens: j.max_tokens, temperature: 0 })).choices[0].text);
    }
  }
  const before = await metrics(main);
  const results = await Promise.all(Array.from({ length: 16 }, async (_, c) => {
    const out = [];
    for (let k = 0; k < 3; ++k) {
      const j = jobs[c * 3 + k];
      out.push(await complete({ model: 'target', temperature: 0, ...j }));
    }
    return out;
  }));
  const flat = results.flat();
  assert.equal(flat.length, 48);
  let generated = 0, drafted = 0, accepted = 0, lookupDrafted = 0, lookupAccepted = 0, modelDrafted = 0;
  let treeRounds = 0, treeDrafted = 0;
  flat.forEach((r, n) => {
    const j = jobs[n];
    assert.equal(r.choices[0].text, expected.get(`${j.prompt}|${j.max_tokens}`), `request ${n}`);
    generated += r.usage.completion_tokens;
    if (j.speculative) {
      assert.equal(r.speculative.enabled, true);
      drafted += r.speculative.drafted;
      accepted += r.speculative.accepted;
      lookupDrafted += r.speculative.lookup_drafted;
      lookupAccepted += r.speculative.lookup_accepted;
      if (!j.drafter || j.drafter === 'model') {
        assert.equal(r.speculative.lookup_drafted, 0, `request ${n}`);
        modelDrafted += r.speculative.drafted;
      }
      if (j.drafter === 'lookup') assert.equal(r.speculative.lookup_drafted, r.speculative.drafted, `request ${n}`);
      if (j.drafter === 'hybrid') assert.ok(r.speculative.lookup_drafted <= r.speculative.drafted, `request ${n}`);
      if (j.drafter === 'tree') {
        assert.equal(r.speculative.lookup_drafted, 0, `request ${n}`);
        assert.equal(r.speculative.tree_rounds, r.speculative.draft_rounds, `request ${n}`);
        treeDrafted += r.speculative.drafted;
      } else if (j.drafter !== 'hybrid') {
        assert.equal(r.speculative.tree_rounds, 0, `request ${n}`);
      }
      treeRounds += r.speculative.tree_rounds;
    } else {
      assert.deepEqual(r.speculative, { enabled: false });
    }
  });
  const m = await metrics(main);
  assert.equal(m.specula_requests_total - before.specula_requests_total, 48);
  assert.equal(m.specula_generated_tokens_total - before.specula_generated_tokens_total, generated);
  assert.equal(m.specula_spec_draft_tokens_total - before.specula_spec_draft_tokens_total, drafted);
  assert.ok(modelDrafted > 0);
  assert.ok(treeDrafted > 0);
  assert.equal(m.specula_spec_tree_rounds_total - before.specula_spec_tree_rounds_total, treeRounds);
  assert.equal(m.specula_spec_accepted_tokens_total - before.specula_spec_accepted_tokens_total, accepted);
  let perPos = 0, perPosBefore = 0;
  for (const [k, v] of Object.entries(m)) if (k.startsWith('specula_spec_accepted_tokens_per_pos_total')) perPos += v;
  for (const [k, v] of Object.entries(before)) if (k.startsWith('specula_spec_accepted_tokens_per_pos_total')) perPosBefore += v;
  assert.equal(perPos - perPosBefore, accepted);
  const bySource = (mm, source, verdict) => mm[`specula_spec_tokens_by_source_total{source="${source}",verdict="${verdict}"}`];
  // (Whether lookup drafts at all depends on the random model repeating itself; the engine's tests
  // cover the lookup itself. Here: requests reach the drafter they name, and the counts add up.)
  assert.equal(bySource(m, 'lookup', 'drafted') - bySource(before, 'lookup', 'drafted'), lookupDrafted);
  assert.equal(bySource(m, 'lookup', 'accepted') - bySource(before, 'lookup', 'accepted'), lookupAccepted);
  assert.equal(bySource(m, 'model', 'drafted') - bySource(before, 'model', 'drafted'), drafted - lookupDrafted);
  assert.ok(m.specula_target_forwards_total - before.specula_target_forwards_total > 0);
  assert.equal(m.specula_queue_depth, 0);
});

async function post(server, route, body, headers = {}) {
  const r = await fetch(`${server.base}${route}`, {
    method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}`, ...headers },
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json, text };
}

test('bad requests get OpenAI-style 4xx errors naming the field', async () => {
  const cases = [
    ['/v1/completions', '{"prompt": "hi", ', 400, null],
    ['/v1/completions', '[1, 2]', 400, null],
    ['/v1/completions', { prompt: 'hi', max_tokens: 'ten' }, 400, 'max_tokens'],
    ['/v1/completions', { prompt: 'hi', max_tokens: 2.5 }, 400, 'max_tokens'],
    ['/v1/completions', { prompt: 'hi', temperature: 'hot' }, 400, 'temperature'],
    ['/v1/completions', { prompt: 'hi', top_p: 0 }, 400, 'top_p'],
    ['/v1/completions', { prompt: 'hi', stream: 'yes' }, 400, 'stream'],
    ['/v1/completions', { prompt: 'hi', stop: [1] }, 400, 'stop'],
    ['/v1/completions', { prompt: '' }, 400, 'prompt'],
    ['/v1/completions', { prompt: [] }, 400, 'prompt'],
    ['/v1/completions', {}, 400, 'prompt'],
    ['/v1/completions', { prompt: [2, 99999999] }, 400, 'prompt'],
    ['/v1/completions', { prompt: 'hi', max_tokens: CONTEXT }, 400, 'max_tokens'],
    ['/v1/completions', { prompt: 'hi '.repeat(300) }, 400, 'prompt'],
    ['/v1/completions', { prompt: 'hi', n: 2 }, 400, 'n'],
    ['/v1/completions', { prompt: 'hi', logprobs: 3 }, 400, 'logprobs'],
    ['/v1/completions', { prompt: 'hi', draft_max: 0 }, 400, 'draft_max'],
    ['/v1/completions', { prompt: 'hi', speculative: 'on' }, 400, 'speculative'],
    ['/v1/completions', { prompt: 'hi', cache_prompt: 1 }, 400, 'cache_prompt'],
    ['/v1/completions', { prompt: 'hi', drafter: 'medusa' }, 400, 'drafter'],
    ['/v1/completions', { prompt: 'hi', drafter: 3 }, 400, 'drafter'],
    ['/v1/chat/completions', { messages: [] }, 400, 'messages'],
    ['/v1/chat/completions', { messages: [{ role: 'user', content: '' }] }, 400, 'messages'],
    ['/v1/chat/completions', { messages: [{ role: 'wizard', content: 'hi' }] }, 400, 'messages[0].role'],
    ['/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function' }] }, 400, 'tools'],
    ['/v1/chat/completions', { prompt: 'hi' }, 400, 'messages'],
  ];
  for (const [route, body, status, param] of cases) {
    const r = await post(main, route, body);
    assert.equal(r.status, status, `${JSON.stringify(body)} -> ${r.text}`);
    assert.equal(typeof r.json.error.message, 'string');
    assert.ok(r.json.error.message.length > 0);
    assert.equal(r.json.error.type, 'invalid_request_error');
    if (param) assert.equal(r.json.error.param, param, JSON.stringify(r.json));
  }
  const big = await post(main, '/v1/completions', { prompt: 'x'.repeat(2 << 20) });
  assert.equal(big.status, 413);
  assert.match(big.json.error.message, /exceeds/);
  const noKey = await post(main, '/v1/completions', { prompt: 'hi' }, { Authorization: '' });
  assert.equal(noKey.status, 401);
  assert.equal(noKey.json.error.type, 'authentication_error');
  const wrongKey = await post(main, '/v1/completions', { prompt: 'hi' }, { Authorization: 'Bearer sk-wrong' });
  assert.equal(wrongKey.status, 401);
  const bad = new OpenAI({ apiKey: 'nope', baseURL: `${main.base}/v1`, maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e.status === 401);
  const unknown = await post(main, '/v1/nothing', {});
  assert.equal(unknown.status, 404);
  assert.equal(typeof unknown.json.error.message, 'string');
  const health = await fetch(`${main.base}/health`);  // no key needed
  assert.equal(health.status, 200);
  const models = await client.models.list();
  assert.equal(models.data.length, 1);
  assert.equal(models.data[0].id, 'target');
});

test('a client that disconnects mid-stream frees its sequence at once', async () => {
  const before = await metrics(main);
  const controller = new AbortController();
  const r = await fetch(`${main.base}/v1/completions`, {
    method: 'POST', signal: controller.signal,
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ prompt: prompts[3], max_tokens: 200, temperature: 0, stream: true, speculative: false }),
  });
  const reader = r.body.getReader();
  let chunks = 0;
  while (chunks < 3) { const { done } = await reader.read(); if (done) break; ++chunks; }
  controller.abort();
  let m;
  for (let i = 0; i < 100; ++i) {
    m = await metrics(main);
    if (m.specula_running_sequences === 0 && m.specula_queue_depth === 0) break;
    await new Promise((res) => setTimeout(res, 20));
  }
  assert.equal(m.specula_running_sequences, 0);
  const generated = m.specula_generated_tokens_total - before.specula_generated_tokens_total;
  assert.ok(generated < 150, `kept generating after the client left: ${generated} tokens`);
  await new Promise((res) => setTimeout(res, 200));
  assert.equal((await metrics(main)).specula_generated_tokens_total, m.specula_generated_tokens_total);
});

test('beyond --parallel + --queue requests get 503; SIGTERM finishes running requests and exits 0', async () => {
  const small = await startServer(['--parallel', '1', '--queue', '1']);
  const send = () => post(small, '/v1/completions', { prompt: prompts[4], max_tokens: 200, temperature: 0 });
  const results = await Promise.all(Array.from({ length: 6 }, send));
  const codes = results.map((r) => r.status).sort();
  assert.ok(codes.includes(200) && codes.includes(503), codes.join(','));
  for (const r of results) {
    if (r.status === 503) assert.equal(r.json.error.type, 'server_error');
    else assert.equal(r.json.usage.completion_tokens, 200);
  }
  // A stream in flight when SIGTERM arrives still ends with [DONE].
  const r = await fetch(`${small.base}/v1/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: prompts[5], max_tokens: 60, temperature: 0, stream: true }),
  });
  const reader = r.body.getReader();
  let body = new TextDecoder().decode((await reader.read()).value);
  const exited = new Promise((res) => small.on('exit', (code) => res(code)));
  small.kill('SIGTERM');
  for (;;) { const { done, value } = await reader.read(); if (done) break; body += new TextDecoder().decode(value); }
  assert.match(body, /data: \[DONE\]/);
  const finals = body.split('\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)));
  assert.equal(finals.at(-1).usage.completion_tokens, 60);
  assert.equal(await exited, 0);
  await assert.rejects(fetch(`${small.base}/health`));
});
