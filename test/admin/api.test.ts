import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN_ERRORS } from '../../src/server/admin/index.js';
import { TestClient } from '../helpers/client.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

const TOKEN = 'admin-token-for-tests-0123456789';

let stack: LedgerTestRelay | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

async function start(settings: { adminToken?: string } = { adminToken: TOKEN }): Promise<LedgerTestRelay> {
  stack = await startTestRelay({ settings: { ...settings, logLevel: 'warn' } });
  return stack;
}

interface Answer {
  status: number;
  body: any;
  headers: Headers;
}

async function admin(path: string, init: { method?: string; body?: unknown; token?: string | null } = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  const token = init.token === undefined ? TOKEN : init.token;
  if (token !== null) headers.Authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (init.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
  }
  const response = await fetch(`${stack!.httpUrl}/admin${path}`, { method: init.method ?? (body === undefined ? 'GET' : 'POST'), headers, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // CSV and HTML stay text.
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

function connect(key: string): TestClient {
  return stack!.connect({ key });
}

function expectError(answer: Answer, status: number, code: string, param?: string) {
  expect({ status: answer.status, code: answer.body?.error?.code }).toEqual({ status, code });
  expect(answer.body.error).toMatchObject({ type: expect.any(String), message: expect.any(String) });
  if (param !== undefined) expect(answer.body.error.param).toBe(param);
  expect(ADMIN_ERRORS).toHaveProperty(code);
}

describe('the admin API', () => {
  it('answers 404 under /admin when ADMIN_TOKEN is not set', async () => {
    await start({});
    expect((await admin('/keys')).status).toBe(404);
    expect((await admin('/ui', { token: null })).status).toBe(404);
    expect((await admin('/sessions')).status).toBe(404);
  });

  it("refuses a missing or wrong token with 401 in OpenAI's error envelope", async () => {
    await start();
    const missing = await admin('/keys', { token: null });
    expectError(missing, 401, 'missing_admin_token');
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expectError(await admin('/keys', { token: 'x'.repeat(TOKEN.length) }), 401, 'invalid_admin_token');
    expectError(await admin('/keys', { token: `${TOKEN}x` }), 401, 'invalid_admin_token');
    expectError(await admin('/sessions/stream', { token: 'short' }), 401, 'invalid_admin_token');
    expectError(await admin('/nothing-here', { token: null }), 401, 'missing_admin_token');
    expectError(await admin('/nothing-here'), 404, 'not_found');
  });

  it('creates a key that is shown once, lists it without it, and the key opens sessions', async () => {
    await start();
    const created = await admin('/keys', { body: { name: 'alice', balance: '12.5', spend_cap: '2', max_sessions: 3, multiplier: '1.25' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      key: expect.stringMatching(/^rk_/),
      name: 'alice',
      balance: '12.500000',
      spend_cap: '2.000000',
      max_sessions: 3,
      multiplier: '1.25',
      disabled: false,
    });
    const listed = await admin('/keys');
    expect(listed.status).toBe(200);
    const alice = listed.body.data.find((k: { name: string }) => k.name === 'alice');
    expect(alice).toEqual({ ...created.body, key: undefined, created_at: created.body.created_at });
    expect(JSON.stringify(listed.body)).not.toContain(created.body.key);
    expect((await admin(`/keys/${alice.id}`)).body).toEqual(alice);

    const client = connect(created.body.key);
    await client.next('session.created');
  });

  it('tops up, disables and enables a key by id or by name', async () => {
    await start();
    const created = await admin('/keys', { body: { name: 'bob', balance: '1' } });
    const topped = await admin(`/keys/${created.body.id}/topup`, { body: { amount: '0.000000001' } });
    expect(topped.status).toBe(200);
    expect(topped.body.balance).toBe('1.000000001');
    expect((await admin('/keys/bob/topup', { body: { amount: '2.5' } })).body.balance).toBe('3.500000001');

    expect((await admin('/keys/bob/disable', { method: 'POST' })).body.disabled).toBe(true);
    const refused = connect(created.body.key);
    await refused.closedWith();
    expect(refused.unexpected?.status).toBe(401);
    expect(JSON.parse(refused.unexpected!.body).error.code).toBe('key_disabled');

    expect((await admin(`/keys/${created.body.id}/enable`, { method: 'POST' })).body.disabled).toBe(false);
    await connect(created.body.key).next('session.created');
  });

  it('rejects bad amounts and ids with 400 and a stable code, and unknown keys with 404', async () => {
    await start();
    const post = (path: string, body: unknown) => admin(path, { body });
    expectError(await post('/keys', { name: 'n', balance: 10 }), 400, 'invalid_amount', 'balance');
    expectError(await post('/keys', { name: 'n', balance: '1.0000000001' }), 400, 'invalid_amount', 'balance');
    expectError(await post('/keys', { name: 'n', balance: '-1' }), 400, 'invalid_amount', 'balance');
    expectError(await post('/keys', { name: 'n' }), 400, 'invalid_amount', 'balance');
    expectError(await post('/keys', { name: 'n', balance: '1', spend_cap: '0' }), 400, 'invalid_amount', 'spend_cap');
    expectError(await post('/keys', { name: ' ', balance: '1' }), 400, 'invalid_input', 'name');
    expectError(await post('/keys', { name: 'n', balance: '1', max_sessions: 0 }), 400, 'invalid_input', 'max_sessions');
    expectError(await post('/keys', { name: 'n', balance: '1', multiplier: 'twice' }), 400, 'invalid_input', 'multiplier');
    expectError(await post('/keys', { name: 'n', balance: '1', spendCap: '1' }), 400, 'unknown_parameter', 'spendCap');
    expectError(await post('/keys', '{"name":'), 400, 'invalid_json');
    expectError(await post('/keys', '["name"]'), 400, 'invalid_json');
    expectError(await post('/keys', { name: 'demo', balance: '1' }), 409, 'key_name_taken');
    expectError(await post('/keys', { name: 'n', balance: '1', pad: 'x'.repeat(70_000) }), 413, 'request_too_large');

    expectError(await post('/keys/demo/topup', { amount: '0' }), 400, 'invalid_amount', 'amount');
    expectError(await post('/keys/demo/topup', { amount: 'ten' }), 400, 'invalid_amount', 'amount');
    expectError(await post('/keys/demo/topup', {}), 400, 'invalid_amount', 'amount');
    expectError(await post('/keys/nobody/topup', { amount: '1' }), 404, 'key_not_found');
    expectError(await admin('/keys/nobody'), 404, 'key_not_found');
    expectError(await admin('/keys/nobody/disable', { method: 'POST' }), 404, 'key_not_found');
    expectError(await admin(`/keys/${'k'.repeat(201)}`), 400, 'invalid_key_ref');

    expectError(await admin('/usage?key=nobody'), 404, 'key_not_found');
    expectError(await admin('/usage?since=last%20week'), 400, 'invalid_input', 'since');
    expectError(await admin('/usage?format=xml'), 400, 'invalid_input', 'format');

    expectError(await admin('/sessions/123'), 400, 'invalid_session_id', 'id');
    expectError(await admin(`/sessions/sess_${'0'.repeat(32)}`), 404, 'session_not_found', 'id');
    expectError(await admin(`/sessions/sess_${'0'.repeat(32)}/cancel`, { method: 'POST' }), 404, 'session_not_found', 'id');
    expectError(await admin('/sessions/sess_XYZ/cancel', { method: 'POST' }), 400, 'invalid_session_id', 'id');
  });

  it('refuses an amount or a top-up past the maximum balance of 1,000,000,000 USD with 400 invalid_amount, and the balance stays', async () => {
    await start();
    const post = (path: string, body: unknown) => admin(path, { body });
    // 10^10 USD is 10^19 nano-USD: past a signed 64-bit integer.
    expectError(await post('/keys/demo/topup', { amount: '10000000000' }), 400, 'invalid_amount', 'amount');
    expectError(await post('/keys/demo/topup', { amount: '9'.repeat(40) }), 400, 'invalid_amount', 'amount');
    expectError(await post('/keys', { name: 'rich', balance: '1000000000.000000001' }), 400, 'invalid_amount', 'balance');
    expect((await post('/keys', { name: 'rich', balance: '999999999' })).status).toBe(201);
    const past = await post('/keys/rich/topup', { amount: '1.5' });
    expectError(past, 400, 'invalid_amount', 'amount');
    expect(past.body.error.message).toContain('maximum of 1000000000 USD');
    expect((await post('/keys/rich/topup', { amount: '1' })).body.balance).toBe('1000000000.000000');
    expect((await admin('/keys/demo')).body.balance).toBe('5.000000');

    // A key already holding more than the maximum (written before it existed): a top-up that would
    // leave the ledger's 64-bit range is refused the same way, never a 500.
    await stack!.ledger.createKey({ name: 'legacy', balanceNano: 9_000_000_000n * 1_000_000_000n });
    expectError(await post('/keys/legacy/topup', { amount: '1000000000' }), 400, 'invalid_amount', 'amount');
    expect((await admin('/keys/legacy')).body.balance).toBe('9000000000.000000');
  });

  it('refuses a key name with a control character or a bidirectional override with 400 invalid_key_name, and creates no key', async () => {
    await start();
    for (const name of ['tab\there', 'line\nbreak', 'bell\u0007', 'nul\u0000', 'del\u007f', 'c1\u0085', 'evil\u202Egnp.exe', 'lre\u202A', 'isolate\u2066x\u2069']) {
      const answer = await admin('/keys', { body: { name, balance: '1' } });
      expectError(answer, 400, 'invalid_key_name', 'name');
      expect(answer.body.error).toMatchObject({ type: 'invalid_request_error', message: expect.stringMatching(/^name must not contain control characters/) });
    }
    expect((await admin('/keys')).body.data.map((k: { name: string }) => k.name)).toEqual(['demo']);
    expect((await admin('/keys', { body: { name: 'Zoë, the "support" team – 東京 ✓', balance: '1' } })).status).toBe(201);
  });

  it('reports usage as JSON and as CSV, by key and since a date', async () => {
    await start();
    const client = connect(stack!.key);
    await client.next('session.created');
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    const done = await client.next('response.done');

    const json = await admin('/usage?key=demo');
    expect(json.status).toBe(200);
    expect(json.body.data).toHaveLength(1);
    const [row] = json.body.data;
    expect(row).toMatchObject({ key_name: 'demo', kind: 'response', item_id: (done.response as { id: string }).id, model: 'gpt-realtime' });
    expect(BigInt(row.cost_nano)).toBeGreaterThan(0n);

    const csv = await admin('/usage?format=csv');
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    const lines = (csv.body as string).trim().split('\n');
    expect(lines[0]).toBe('at,key,session_id,kind,item_id,model,cost_usd');
    expect(lines[1]!.split(',')).toEqual([row.at, 'demo', row.session_id, 'response', row.item_id, 'gpt-realtime', row.cost]);

    expect((await admin('/usage?since=2999-01-01')).body.data).toEqual([]);
  });

  it('shows a live session with its key, model, upstream, state, counters and spend', async () => {
    await start();
    const client = connect(stack!.key);
    await client.next('session.created');
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await client.next('response.done');

    const list = await admin('/sessions');
    expect(list.status).toBe(200);
    expect(list.body.data).toHaveLength(1);
    const [session] = list.body.data;
    const [charge] = (await admin('/usage')).body.data;
    expect(session).toMatchObject({
      id: charge.session_id,
      key: { name: 'demo' },
      client_address: '127.0.0.1',
      model: 'gpt-realtime',
      upstream: { name: expect.any(String), model: 'gpt-realtime' },
      state: 'relaying',
      response_in_flight: false,
      response_id: null,
      spend: charge.cost,
      spend_nano: charge.cost_nano,
    });
    expect(session.client_to_upstream.frames).toBe(1);
    expect(session.client_to_upstream.bytes).toBeGreaterThan(0);
    expect(session.upstream_to_client.frames).toBe(client.events.length);
    expect(session.upstream_to_client.bytes).toBe(client.raw.reduce((sum, frame) => sum + frame.length, 0));
    expect(session.age_ms).toBeGreaterThanOrEqual(0);
    expect(Date.parse(session.started_at)).not.toBeNaN();
    expect((await admin(`/sessions/${session.id}`)).body).toMatchObject({ id: session.id, state: 'relaying' });
  });

  it('cancels a session: the tail is billed, the client gets session_cancelled and close 1000, the ledger says cancelled:operator', async () => {
    await start();
    const client = connect(stack!.key);
    await client.next('session.created');
    client.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
    client.send({ type: 'response.create' });
    await client.next('response.created');
    const id = (await admin('/sessions')).body.data[0].id;
    expect((await admin(`/sessions/${id}`)).body.response_in_flight).toBe(true);

    const cancelled = await admin(`/sessions/${id}/cancel`, { method: 'POST' });
    expect(cancelled.status).toBe(202);
    expect(cancelled.body).toMatchObject({ id, state: 'draining' });

    expect(await client.closedWith()).toMatchObject({ code: 1000 });
    const done = client.events.find((e) => e.type === 'response.done')!;
    expect((done.response as { status: string }).status).toBe('cancelled');
    expect(client.events.at(-1)).toMatchObject({ type: 'error', error: { code: 'session_cancelled' } });

    await stack!.idle();
    const [settlement] = stack!.settlements();
    expect(settlement).toMatchObject({ sessionId: id, status: 'settled', endReason: 'cancelled:operator', chargeCount: 1 });
    expect(settlement!.summary).toMatchObject({ drain: 'response_done', clientCloseCode: 1000 });
    expectError(await admin(`/sessions/${id}/cancel`, { method: 'POST' }), 404, 'session_not_found');
  });
});
