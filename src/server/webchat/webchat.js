// The web chat's script, served at GET /webchat.js. It streams replies from /v1/chat/completions
// with the Specula extension `token_origins` and marks each generated token by how it came: an
// accepted draft token or the target's own. Model and server text is only ever set through
// textContent.
'use strict';
const $ = (id) => document.getElementById(id);
const turns = [];  // {role, content} of the conversation so far
let controller = null;
let conversation = newConversationId();

// Sent as X-Conversation-Id, so that a load balancer keeps the chat on the replica whose prompt
// cache holds it (deploy/nginx). getRandomValues works over plain http too, unlike randomUUID.
function newConversationId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return 'webchat-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function apiKey() { return localStorage.getItem('specula-api-key') || ''; }
function headers() {
  const h = { 'Content-Type': 'application/json', 'X-Conversation-Id': conversation };
  if (apiKey()) h.Authorization = 'Bearer ' + apiKey();
  return h;
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + role;
  if (text !== undefined) div.textContent = text;
  $('log').appendChild(div);
  div.scrollIntoView({ block: 'end' });
  return div;
}

async function loadModel() {
  try {
    const r = await fetch('/v1/models', { headers: headers() });
    const j = await r.json();
    if (!r.ok) {
      $('model').textContent = r.status === 401 ? 'this server needs an API key (settings)'
                                                  : (j.error && j.error.message) || r.statusText;
      return;
    }
    const m = j.data[0];
    $('model').textContent = m.id + (m.speculative ? ' · with an MTP drafter' : ' · no drafter');
    $('model').dataset.ready = '1';
    if (!m.speculative) { $('speculative').checked = false; $('speculative').disabled = true; }
  } catch (e) {
    $('model').textContent = 'cannot reach the server: ' + e.message;
  }
}

function number(id, fallback) {
  const text = $(id).value.trim();
  const v = Number(text);
  return text !== '' && Number.isFinite(v) ? v : fallback;
}

// Reads a Server-Sent Events body and calls onEvent with each parsed data object. True once the
// closing [DONE] came; a stream that ends without it was cut off.
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') return true;
        onEvent(JSON.parse(data));
      }
    }
  }
}

// The line under a finished reply. rate: the server's decode tokens per second.
function describe(final, tokens, drafts, rate) {
  const parts = [tokens + ' tokens', (rate > 0 ? rate.toFixed(1) : '–') + ' tok/s'];
  const spec = final && final.speculative;
  if (spec && spec.enabled) {
    parts.push('drafts accepted ' + spec.accepted + '/' + spec.drafted + ' (' +
               (100 * spec.acceptance_rate).toFixed(0) + '%)');
    parts.push(drafts + ' tokens from drafts');
  } else {
    parts.push('plain decoding');
  }
  if (final && final.usage) parts.push('prompt ' + final.usage.prompt_tokens + ' (cached ' +
                                       final.usage.prompt_tokens_details.cached_tokens + ')');
  return parts.join(' · ');
}

async function send() {
  const text = $('input').value.trim();
  if (!text || controller) return;
  $('input').value = '';
  addMessage('user', text);
  const chat = conversation;
  turns.push({ role: 'user', content: text });
  const speculative = $('speculative').checked;
  const body = {
    messages: turns, stream: true, stream_options: { include_usage: true }, token_origins: true,
    temperature: number('temperature', 0.7), max_tokens: Math.round(number('max-tokens', 256)),
    speculative,
  };
  if (speculative) body.draft_max = Math.round(number('draft-max', 3));
  const out = addMessage('assistant');
  const textNode = document.createElement('span');
  out.appendChild(textNode);
  out.dataset.speculative = speculative ? '1' : '0';
  let reply = '', tokens = 0, drafts = 0, chunks = 0, final = null, usage = null;
  let first = 0, firstTokens = 0;  // when the first tokens came, and how many
  controller = new AbortController();
  $('send').disabled = true;
  $('stop').disabled = false;
  // tok/s counts the tokens after the first chunk over the time since it came.
  const live = () => {
    const s = first ? (performance.now() - first) / 1000 : 0;
    const rate = s > 0 && tokens > firstTokens ? ((tokens - firstTokens) / s).toFixed(1) : '–';
    $('live').textContent = tokens + ' tokens · ' + rate + ' tok/s · ' +
        (tokens ? (100 * drafts / tokens).toFixed(0) : 0) + '% from drafts';
  };
  try {
    const r = await fetch('/v1/chat/completions', { method: 'POST', headers: headers(),
                                                     body: JSON.stringify(body),
                                                     signal: controller.signal });
    if (!r.ok) {
      const j = await r.json().catch(() => ({}));
      throw new Error((j.error && j.error.message) || ('HTTP ' + r.status));
    }
    const complete = await readEvents(r.body, (ev) => {
      if (ev.error) throw new Error(ev.error.message);
      if (ev.usage) usage = ev.usage;
      if (!ev.choices || !ev.choices.length) return;
      const c = ev.choices[0];
      if (c.finish_reason) final = ev;
      for (const o of c.token_origins || []) {
        if (o.draft !== undefined) {
          ++tokens;
          if (o.draft) ++drafts;
        }
        if (!o.text) continue;
        const span = document.createElement('span');
        span.className = o.draft ? 'tok draft' : 'tok';
        span.textContent = o.text;
        out.insertBefore(span, textNode);
        reply += o.text;
      }
      if (c.token_origins) ++chunks;
      if (!first && tokens) {
        first = performance.now();
        firstTokens = tokens;
      }
      live();
      out.scrollIntoView({ block: 'end' });
    });
    if (!complete || !final) throw new Error('the reply was cut off (the server went away?)');
    const stats = document.createElement('span');
    stats.className = 'stats';
    stats.textContent = describe({ ...final, usage: usage || final.usage }, tokens, drafts,
                                 final.timings ? final.timings.predicted_per_second : 0);
    out.appendChild(stats);
    const spec = final && final.speculative;
    if (spec && spec.enabled && spec.drafted > 0) {
      $('live').textContent += ' · acceptance ' + (100 * spec.acceptance_rate).toFixed(0) + '%';
    }
    // What the browser test compares with the response's own statistics.
    const u = usage || (final && final.usage) || {};
    out.dataset.tokens = tokens;
    out.dataset.drafts = drafts;
    out.dataset.chunks = chunks;
    out.dataset.completionTokens = u.completion_tokens;
    out.dataset.acceptedPredictionTokens =
        u.completion_tokens_details ? u.completion_tokens_details.accepted_prediction_tokens : '';
    out.dataset.specAccepted = final && final.speculative.enabled ? final.speculative.accepted : 0;
    out.dataset.finish = final ? final.choices[0].finish_reason : '';
    out.dataset.reply = reply;
    turns.push({ role: 'assistant', content: reply });
  } catch (e) {
    if (chat === conversation) {  // (after "New chat" the old conversation is gone already)
      turns.pop();  // the user's turn is not part of the conversation unless it was answered
      const err = addMessage('error', e.name === 'AbortError' ? 'stopped' : e.message);
      out.dataset.error = err.textContent;
    }
  } finally {
    out.dataset.done = '1';
    controller = null;
    $('send').disabled = false;
    $('stop').disabled = true;
  }
}

$('send').addEventListener('click', send);
$('stop').addEventListener('click', () => controller && controller.abort());
$('input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send(); }
});
$('speculative').addEventListener('change', () => {
  $('draft-max').disabled = !$('speculative').checked;
});
$('save-key').addEventListener('click', () => {
  localStorage.setItem('specula-api-key', $('api-key').value.trim());
  $('api-key').value = '';
  loadModel();
});
$('new-chat').addEventListener('click', () => {
  conversation = newConversationId();
  if (controller) controller.abort();
  turns.length = 0;
  $('log').textContent = '';
  $('live').textContent = '';
});
loadModel();
