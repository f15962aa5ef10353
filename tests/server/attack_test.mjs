// `specula serve` probed as an attacker would: raw sockets against the real binary. Nothing a client
// sends may end the process, exhaust its memory or take it off the air; shutdown is bounded.
//   node attack_test.mjs SPECULA_BIN WORK_DIR [rss|no-rss]
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { test, after } from 'node:test';
import path from 'node:path';

import { startServer as serve, killServers } from './serve.mjs';

const [bin, work, rssArg] = process.argv.slice(2);
const RSS_CHECKS = rssArg !== 'no-rss';  // no-rss: a sanitizer build, whose quarantine holds memory
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
// A fast model for most probes; a slower one (~40 tok/s on 2 cores) where a request must still be
// running when the client leaves or the server shuts down.
const fast = { model: path.join(work, 'target'), draft: path.join(work, 'assistant') };
const slow = { model: path.join(work, 'slow', 'target'), draft: path.join(work, 'slow', 'assistant') };
mkdirSync(path.join(work, 'slow'));
execFileSync(bin, ['make-random', fast.model, '--preset', 'e2b-tiny', '--assistant', fast.draft]);
execFileSync(bin, ['make-random', slow.model, '--preset', 'e2b-small', '--assistant', slow.draft]);

const KEY = 'sk-attack';
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

// `specula serve -m MODEL -md DRAFT -c 512 EXTRA...`, the fast pair unless told otherwise.
const startServer = (extra, { model, draft } = fast) =>
  serve(bin, ['-m', model, '-md', draft, '-c', '512', ...extra]);
after(killServers);

const rssKiB = (proc) => Number(readFileSync(`/proc/${proc.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);

// Sends raw bytes, returns everything the server sends back until it closes (or `ms` pass).
function rawExchange(port, bytes, ms = 5000) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    const done = () => { clearTimeout(timer); sock.destroy(); resolve(Buffer.concat(chunks)); };
    const timer = setTimeout(done, ms);
    sock.on('connect', () => sock.write(bytes));
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', done);
    sock.on('close', done);
  });
}

// Splits a byte stream of HTTP/1.1 responses (Content-Length or chunked bodies).
function parseResponses(buf) {
  const out = [];
  let s = buf.toString('latin1');
  while (s.length) {
    const end = s.indexOf('\r\n\r\n');
    if (end < 0) break;
    const head = s.slice(0, end);
    const status = Number(head.split(' ')[1]);
    const headers = Object.fromEntries(head.split('\r\n').slice(1).map((l) => {
      const i = l.indexOf(':');
      return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
    }));
    s = s.slice(end + 4);
    let body = '';
    if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const nl = s.indexOf('\r\n');
        const n = parseInt(s.slice(0, nl), 16);
        s = s.slice(nl + 2);
        if (n === 0) { s = s.slice(2); break; }
        body += s.slice(0, n);
        s = s.slice(n + 2);
      }
    } else {
      const n = Number(headers['content-length'] ?? 0);
      body = s.slice(0, n);
      s = s.slice(n);
    }
    out.push({ status, headers, body: Buffer.from(body, 'latin1').toString('utf8') });
  }
  return out;
}

async function health(server, timeoutMs = 1000) {
  const t0 = Date.now();
  const r = await fetch(`${server.base}/health`, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: r.status, ms: Date.now() - t0 };
}

const req = (method, target, headers = {}, body = '') => {
  const h = { Host: 'x', ...headers };
  if (body.length) h['Content-Length'] = Buffer.byteLength(body);
  return Buffer.concat([Buffer.from(`${method} `), Buffer.isBuffer(target) ? target : Buffer.from(target),
    Buffer.from(` HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${body}`)]);
};

const keyed = await startServer(['--parallel', '4', '--api-key', KEY, '--max-body', '4096']);
const open = await startServer(['--parallel', '4'], slow);

test('paths that decode to invalid UTF-8 get a 404 JSON error, with and without an API key', async () => {
  const targets = ['/%ff', '/v1/models%ff', '/%c3%28', Buffer.from([0x2f, 0xff]), Buffer.from('/v1/\xc3\x28', 'latin1')];
  for (const server of [keyed, open]) {
    for (const t of targets) {
      const [r] = parseResponses(await rawExchange(server.port, req('GET', t, { Connection: 'close' })));
      assert.ok(r, `no response for ${t}`);
      assert.ok(r.status === 404 || r.status === 400, `${t}: ${r.status}`);
      const j = JSON.parse(r.body);
      assert.equal(typeof j.error.message, 'string');
    }
    assert.equal((await health(server)).status, 200);
  }
});

test('an unauthenticated chunked flood is refused before its body is read; an oversized one gets 413', async () => {
  for (const auth of [null, `Bearer ${KEY}`]) {
    const before = rssKiB(keyed);
    const { status, sent } = await new Promise((resolve) => {
      const sock = net.connect(keyed.port, '127.0.0.1');
      let sent = 0;
      let reply = '';
      const chunk = Buffer.alloc(1 << 16, 'a');
      const frame = Buffer.concat([Buffer.from(chunk.length.toString(16) + '\r\n'), chunk, Buffer.from('\r\n')]);
      const finish = () => { sock.destroy(); resolve({ status: Number(reply.split(' ')[1]), sent }); };
      sock.on('data', (d) => { reply += d; });
      sock.on('error', finish);
      sock.on('close', finish);
      sock.on('connect', () => {
        sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n${auth ? `Authorization: ${auth}\r\n` : ''}\r\n`);
        const pump = () => {
          while (sent < 300 << 20 && !sock.destroyed && !reply) {
            sent += frame.length;
            if (!sock.write(frame)) { sock.once('drain', pump); return; }
          }
          if (sent >= 300 << 20) sock.end();
        };
        pump();
      });
    });
    assert.equal(status, auth ? 413 : 401, `auth=${auth}`);
    assert.ok(sent < 300 << 20, 'the server read the whole flood');
    const grown = rssKiB(keyed) - before;
    if (RSS_CHECKS) assert.ok(grown < 32 << 10, `RSS grew by ${grown} KiB`);
  }
  assert.equal((await health(keyed)).status, 200);
});

test('40 slow-header connections do not take /health off the air, and are cut at the read deadline', async () => {
  const server = await startServer(['--read-timeout', '3', '--max-connections', '64']);
  const held = [];
  let closedByServer = 0;
  for (let i = 0; i < 40; ++i) {
    const sock = net.connect(server.port, '127.0.0.1');
    sock.on('error', () => {});
    sock.on('close', () => { ++closedByServer; });
    sock.on('connect', () => sock.write('GET /health HTTP/1.1\r\nHost: x\r\n'));
    sock.timer = setInterval(() => { if (!sock.destroyed) sock.write('X-Slow: 1\r\n'); }, 1000);
    held.push(sock);
  }
  await sleep(500);
  for (let i = 0; i < 8; ++i) {
    const h = await health(server);
    assert.equal(h.status, 200);
    assert.ok(h.ms < 1000, `/health took ${h.ms} ms under slowloris`);
    await sleep(250);
  }
  await sleep(4000);  // past the 3 s read deadline
  assert.equal(closedByServer, 40, 'slow connections still open after the read deadline');
  for (const s of held) { clearInterval(s.timer); s.destroy(); }
});

test('beyond --max-connections, idle and slow connections are evicted so new clients get in', async () => {
  const server = await startServer(['--max-connections', '8', '--read-timeout', '60', '--idle-timeout', '60']);
  const held = [];
  for (let i = 0; i < 20; ++i) {
    const sock = net.connect(server.port, '127.0.0.1');
    sock.on('error', () => {});
    sock.on('connect', () => sock.write('GET /health HTTP/1.1\r\n'));
    held.push(sock);
    await sleep(20);
  }
  for (let i = 0; i < 5; ++i) {
    const h = await health(server);
    assert.equal(h.status, 200);
  }
  const m = await (await fetch(`${server.base}/metrics`)).text();
  assert.match(m, /specula_http_connections_evicted_total [1-9]/);
  for (const s of held) s.destroy();
});

test('pipelined requests are all answered, in order', async () => {
  const body = JSON.stringify({ prompt: 'hello', max_tokens: 5, temperature: 0 });
  const bytes = Buffer.concat([
    req('GET', '/health'),
    req('POST', '/v1/completions', { 'Content-Type': 'application/json' }, body),
    req('GET', '/v1/models'),
    req('POST', '/v1/completions', { 'Content-Type': 'application/json' }, JSON.stringify({ prompt: 'hello', max_tokens: 3, stream: true })),
    req('GET', '/health', { Connection: 'close' }),
  ]);
  const rs = parseResponses(await rawExchange(open.port, bytes, 20000));
  assert.deepEqual(rs.map((r) => r.status), [200, 200, 200, 200, 200]);
  assert.equal(JSON.parse(rs[1].body).usage.completion_tokens, 5);
  assert.equal(JSON.parse(rs[2].body).object, 'list');
  assert.match(rs[3].body, /data: \[DONE\]/);
  assert.equal(JSON.parse(rs[4].body).status, 'ok');
});

test('a non-streaming request whose client left stops generating at the next round', async () => {
  const metrics = async () => Object.fromEntries((await (await fetch(`${open.base}/metrics`)).text()).split('\n')
    .filter((l) => l && !l.startsWith('#')).map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
  const before = await metrics();
  const body = JSON.stringify({ prompt: 'hello', max_tokens: 400, temperature: 0, speculative: false });
  const sock = net.connect(open.port, '127.0.0.1');
  sock.on('error', () => {});
  sock.write(req('POST', '/v1/completions', {}, body));
  await sleep(300);
  sock.destroy();
  let m;
  for (let i = 0; i < 100; ++i) {
    m = await metrics();
    if (m.specula_running_sequences === 0) break;
    await sleep(20);
  }
  assert.equal(m.specula_running_sequences, 0);
  const generated = m.specula_generated_tokens_total - before.specula_generated_tokens_total;
  assert.ok(generated < 400, `kept generating for a client that left: ${generated} tokens`);
  await sleep(300);
  assert.equal((await metrics()).specula_generated_tokens_total, m.specula_generated_tokens_total);
});

test('small protocol faults: NUL in the key, conflicting Content-Length, unknown model', async () => {
  const nul = parseResponses(await rawExchange(keyed.port, req('GET', '/v1/models', { Authorization: `Bearer ${KEY}\0junk`, Connection: 'close' })));
  assert.ok(nul[0].status === 400 || nul[0].status === 401, `NUL-suffixed key: ${nul[0].status}`);
  const cl = await rawExchange(open.port, Buffer.from('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello'));
  assert.equal(parseResponses(cl)[0].status, 400);
  const te = await rawExchange(open.port, Buffer.from('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'));
  assert.equal(parseResponses(te)[0].status, 400);
  const r = await fetch(`${open.base}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'gpt-4', prompt: 'hi' }) });
  assert.equal(r.status, 404);
  assert.equal((await r.json()).error.code, 'model_not_found');
  const served = await fetch(`${open.base}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'target', prompt: 'hi', max_tokens: 2 }) });
  assert.equal(served.status, 200);
});

test('JSON nested 100,000 deep is a 400, not a stack overflow', async () => {
  for (const field of ['n', 'stop', 'prompt', 'max_tokens']) {
    const body = `{"prompt":"hi","${field}":${'['.repeat(100000)}${']'.repeat(100000)}}`;
    const r = await fetch(`${open.base}/v1/completions`, { method: 'POST', body });
    assert.equal(r.status, 400, field);
    assert.match((await r.json()).error.message, /nest/);
  }
  assert.equal((await health(open)).status, 200);
});

test('chunk extensions and trailers without end are cut off, memory stays bounded', async () => {
  for (const tail of ['1;' + 'x'.repeat(1 << 16), '0\r\nX-Trailer: ' + 'y'.repeat(1 << 16)]) {
    const before = rssKiB(keyed);
    const status = await new Promise((resolve) => {
      const sock = net.connect(keyed.port, '127.0.0.1');
      let reply = '';
      const chunk = Buffer.from(tail.slice(-(1 << 16)));
      let sent = 0;
      sock.on('data', (d) => { reply += d; });
      sock.on('error', () => {});
      sock.on('close', () => resolve(Number(reply.split(' ')[1])));
      sock.on('connect', () => {
        sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nTransfer-Encoding: chunked\r\n\r\n${tail.slice(0, 20)}`);
        const pump = () => {
          while (sent < 200 << 20 && !sock.destroyed && !reply) {
            sent += chunk.length;
            if (!sock.write(chunk)) { sock.once('drain', pump); return; }
          }
          sock.end();
        };
        pump();
      });
    });
    assert.equal(status, 400);
    const grown = rssKiB(keyed) - before;
    if (RSS_CHECKS) assert.ok(grown < 16 << 10, `RSS grew by ${grown} KiB`);
  }
});

test('clients that pipeline and never read cannot hold the connection limit', async () => {
  const server = await startServer(['--max-connections', '8']);
  const held = [];
  for (let i = 0; i < 12; ++i) {
    const sock = net.connect({ port: server.port, host: '127.0.0.1' });
    sock.on('error', () => {});
    sock.on('connect', () => {
      sock.pause();  // never read
      sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(200000));
    });
    held.push(sock);
  }
  await sleep(3500);  // their writes stall for more than the 2 s after which they are evictable
  // Each probe is a new client (its own connection): it takes a stalled pipeliner's slot.
  for (let i = 0; i < 4; ++i) {
    const r = parseResponses(await rawExchange(server.port,
      Buffer.from('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')));
    assert.equal(r[0]?.status, 200);
  }
  for (const s of held) s.destroy();
});

test('a client that pipelined more than the read-ahead and left still frees its request', async () => {
  const metrics = async () => Object.fromEntries((await (await fetch(`${open.base}/metrics`)).text()).split('\n')
    .filter((l) => l && !l.startsWith('#')).map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
  const body = JSON.stringify({ prompt: 'hello', max_tokens: 400, temperature: 0, speculative: false });
  const sock = net.connect(open.port, '127.0.0.1');
  sock.on('error', () => {});
  sock.write(Buffer.concat([req('POST', '/v1/completions', {}, body), Buffer.alloc(100000, 'G')]));
  await sleep(500);
  sock.destroy();
  let m;
  for (let i = 0; i < 50; ++i) {
    m = await metrics();
    if (m.specula_running_sequences === 0) break;
    await sleep(50);
  }
  assert.equal(m.specula_running_sequences, 0);
});

test('HTTP details: 100-continue only for HTTP/1.1, codings other than chunked, Host, absolute-form targets', async () => {
  const expect10 = (await rawExchange(open.port, Buffer.from('GET /health HTTP/1.0\r\nExpect: 100-continue\r\n\r\n'))).toString();
  assert.doesNotMatch(expect10, /100 Continue/);
  assert.match(expect10, /^HTTP\/1\.0 200/);
  const gzip = parseResponses(await rawExchange(open.port, Buffer.from('POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n')));
  assert.equal(gzip[0].status, 501);
  const noHost = parseResponses(await rawExchange(open.port, Buffer.from('GET /health HTTP/1.1\r\n\r\n')));
  assert.equal(noHost[0].status, 400);
  const twoHosts = parseResponses(await rawExchange(open.port, Buffer.from('GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n')));
  assert.equal(twoHosts[0].status, 400);
  const absolute = parseResponses(await rawExchange(open.port, Buffer.from('GET http://x/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')));
  assert.equal(absolute[0].status, 200);
  const getBody = parseResponses(await rawExchange(open.port, Buffer.from('GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc')));
  assert.equal(getBody[0].status, 400);
  const r = await fetch(`${open.base}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({
    messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, max_completion_tokens: null }) });
  assert.equal((await r.json()).usage.completion_tokens, 3);
});

test('SIGTERM under slow clients exits within the shutdown timeout; running requests finish', async () => {
  const server = await startServer(['--shutdown-timeout', '20', '--read-timeout', '600', '--idle-timeout', '600'], slow);
  const held = [];
  for (let i = 0; i < 10; ++i) {
    const sock = net.connect(server.port, '127.0.0.1');
    sock.on('error', () => {});
    sock.on('connect', () => sock.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\n'));
    held.push(sock);
  }
  const idle = net.connect(server.port, '127.0.0.1');
  idle.on('error', () => {});
  const running = fetch(`${server.base}/v1/completions`, {
    method: 'POST', body: JSON.stringify({ prompt: 'once', max_tokens: 40, temperature: 0 }),
  }).then((r) => r.json());
  await sleep(300);
  const t0 = Date.now();
  server.kill('SIGTERM');
  const r = await running;
  assert.equal(r.usage.completion_tokens, 40);
  const { code } = await server.exited;
  assert.equal(code, 0);
  assert.ok(Date.now() - t0 < 15000, `shutdown took ${Date.now() - t0} ms`);
  for (const s of held) s.destroy();
  idle.destroy();
});

test('the shutdown timeout ends requests that run too long with an error; a second SIGTERM exits at once', async () => {
  const server = await startServer(['--shutdown-timeout', '1', '--parallel', '1'], slow);
  const long = { prompt: 'once', max_tokens: 480, temperature: 0, speculative: false };
  const plain = fetch(`${server.base}/v1/completions`, { method: 'POST', body: JSON.stringify(long) });
  const stream = fetch(`${server.base}/v1/completions`, { method: 'POST', body: JSON.stringify({ ...long, stream: true, prompt: 'twice' }) });
  await sleep(500);
  server.kill('SIGTERM');
  const p = await plain;
  assert.equal(p.status, 503);
  assert.equal((await p.json()).error.type, 'server_error');
  const s = await (await stream).text();
  assert.match(s, /"error"/);
  assert.doesNotMatch(s, /\[DONE\]/);
  assert.equal((await server.exited).code, 0, server.log);

  const again = await startServer(['--shutdown-timeout', '600', '--parallel', '1'], slow);
  const pending = fetch(`${again.base}/v1/completions`, { method: 'POST', body: JSON.stringify(long) }).catch((e) => e);
  await sleep(500);
  again.kill('SIGTERM');
  await sleep(300);
  const t0 = Date.now();
  again.kill('SIGTERM');
  const { code } = await again.exited;
  assert.equal(code, 1);
  assert.ok(Date.now() - t0 < 2000);
  await pending;
});
