import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { realtimeInvoice, sum, usage } from '../billing/invoice.js';
import { readSqlite } from '../helpers/ledger.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

const OPENAI_SECRET = `whsec_${Buffer.from('the operator secret, 32 bytes!!').toString('base64')}`;
const TENANT_SECRET = `whsec_${Buffer.from('a tenant own secret of 32 bytes!').toString('base64')}`;
const WRONG_SECRET = `whsec_${Buffer.from('somebody else secret, 32 bytes!!').toString('base64')}`;

const TURN_A = usage({ text: [120, 20], audio: [300, 100], out: [40, 200] });
const TURN_B = usage({ text: [80, 0], audio: [900, 300], out: [10, 450] });

let numbers = 0;
/** A called number no other test routes. */
function freshNumber(): string {
  return `+1555${String(Date.now() % 100000).padStart(5, '0')}${String(++numbers).padStart(2, '0')}`;
}

/** A tenant's own webhook receiver: it verifies each delivery with the tenant's secret, as the tenant's server would. */
async function startTenantReceiver(secret: string): Promise<{ url: string; events: Array<{ callId: string; headers: Array<{ name: string; value: string }> }>; refused: number; close(): Promise<void> }> {
  const events: Array<{ callId: string; headers: Array<{ name: string; value: string }> }> = [];
  const receiver = { url: '', events, refused: 0, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  const verifier = new Webhook(secret);
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      try {
        const event = verifier.verify(Buffer.concat(chunks).toString('utf8'), req.headers as Record<string, string>) as { type: string; data: { call_id: string; sip_headers: Array<{ name: string; value: string }> } };
        expect(event.type).toBe('realtime.call.incoming');
        events.push({ callId: event.data.call_id, headers: event.data.sip_headers });
        res.writeHead(200).end();
      } catch {
        receiver.refused++;
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/calls`;
  return receiver;
}

describe('phone calls (SIP) through the relay', () => {
  let stack: LedgerTestRelay;
  const webhookUrl = () => `${stack.httpUrl}/v1/sip/webhook`;
  const control = (callId: string, action: string, key: string, body?: unknown) =>
    fetch(`${stack.httpUrl}/v1/realtime/calls/${callId}/${action}`, { method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const sipState = (callId: string) => stack.sim.sipCall(callId)!;
  const sipSessions = () => readSqlite(`${stack.dataDir}/ledger.db`, (db) => db.prepare("SELECT id, key_id FROM sessions WHERE transport = 'sip'").all() as Array<{ id: string; key_id: string }>);
  const webhookRows = () => readSqlite(`${stack.dataDir}/ledger.db`, (db) => Number(db.prepare('SELECT count(*) AS n FROM sip_webhooks').pluck().get()));

  async function tenant(balanceUsd = 10) {
    const created = await stack.createKey({ balanceNano: BigInt(balanceUsd) * 1_000_000_000n });
    const number = freshNumber();
    return { ...created, number };
  }

  beforeAll(async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, settings: { openaiWebhookSecret: OPENAI_SECRET, sipTenantTimeoutMs: 5_000 } });
    stack.sim.setCallWebhook({ url: webhookUrl(), secret: OPENAI_SECRET });
  });
  afterEach(async () => {
    await stack.idle();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('accepts a routed call and bills each tenant its own turns, to the nano-USD', async () => {
    const alice = await tenant();
    const bob = await tenant();
    await stack.ledger.addRoute({ match: { kind: 'number', number: alice.number }, key: alice.record.id, session: { model: 'gpt-realtime', instructions: 'Front desk' } });
    await stack.ledger.addRoute({ match: { kind: 'header', name: 'X-Tenant', value: 'bob' }, key: bob.record.name, session: { model: 'gpt-realtime' } });
    const toAlice = await stack.sim.placeSipCall({ to: alice.number, turns: [{ usage: TURN_A }, { usage: TURN_B }], hangUpAfterTurns: true });
    const toBob = await stack.sim.placeSipCall({ to: '+15550000000', sipHeaders: [{ name: 'X-Tenant', value: 'bob' }], turns: [{ usage: TURN_B }], hangUpAfterTurns: true });
    expect([toAlice.webhook, toBob.webhook]).toEqual([{ status: 200 }, { status: 200 }]);
    await expect.poll(() => [sipState(toAlice.callId).state, sipState(toBob.callId).state], { timeout: 10_000 }).toEqual(['ended', 'ended']);
    expect(sipState(toAlice.callId).session).toMatchObject({ model: 'gpt-realtime', instructions: 'Front desk' });
    await stack.idle();
    const aliceBook = await stack.view.book(alice.record.id);
    const bobBook = await stack.view.book(bob.record.id);
    const aliceTotal = sum([realtimeInvoice('gpt-realtime', TURN_A), realtimeInvoice('gpt-realtime', TURN_B)]);
    const bobTotal = realtimeInvoice('gpt-realtime', TURN_B);
    expect(aliceBook.charges.map((c) => c.costNano)).toEqual([realtimeInvoice('gpt-realtime', TURN_A), realtimeInvoice('gpt-realtime', TURN_B)]);
    expect(aliceBook.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: aliceTotal, chargeCount: 2 })]);
    expect(aliceBook.balanceNano).toBe(alice.record.balanceNano - aliceTotal);
    expect(bobBook.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: bobTotal, chargeCount: 1 })]);
    expect(bobBook.balanceNano).toBe(bob.record.balanceNano - bobTotal);
    expect(aliceBook.settlements[0]!.summary).toMatchObject({ transport: 'sip' });
    const metrics = await (await fetch(`${stack.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/relay_sessions_ended_total\{reason="[^"]+",transport="sip"\} 2/);
  });

  it('rejects unrouted, disabled and empty-balance calls upstream, and charges nothing', async () => {
    const disabled = await tenant();
    await stack.ledger.setDisabled(disabled.record.id, true);
    const broke = await stack.createKey({ balanceNano: 0n });
    const brokeNumber = freshNumber();
    await stack.ledger.addRoute({ match: { kind: 'number', number: disabled.number }, key: disabled.record.id, session: { model: 'gpt-realtime' } });
    await stack.ledger.addRoute({ match: { kind: 'number', number: brokeNumber }, key: broke.record.id, session: { model: 'gpt-realtime' } });
    const before = sipSessions().length;
    const unrouted = await stack.sim.placeSipCall({ to: freshNumber(), turns: [{ usage: TURN_A }] });
    const toDisabled = await stack.sim.placeSipCall({ to: disabled.number, turns: [{ usage: TURN_A }] });
    const toBroke = await stack.sim.placeSipCall({ to: brokeNumber, turns: [{ usage: TURN_A }] });
    await expect.poll(() => [unrouted, toDisabled, toBroke].map((call) => [sipState(call.callId).state, sipState(call.callId).rejectStatus])).toEqual([
      ['rejected', 404],
      ['rejected', 480],
      ['rejected', 480],
    ]);
    expect(sipSessions().length).toBe(before);
    expect((await stack.view.book(disabled.record.id)).charges).toEqual([]);
    expect((await stack.view.book(broke.record.id)).charges).toEqual([]);
    expect(stack.logs.some((line) => line.event === 'sip.call' && line.outcome === 'unrouted' && line.sipStatus === 404)).toBe(true);
    const metrics = await (await fetch(`${stack.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/relay_sip_calls_total\{outcome="unrouted"\} [1-9]/);
    expect(metrics).toMatch(/relay_sip_calls_total\{outcome="refused"\} [2-9]/);
  });

  it('rejects a call as busy while its key is at its concurrent-session limit', async () => {
    const { record } = await stack.createKey({ maxSessions: 1 });
    const number = freshNumber();
    await stack.ledger.addRoute({ match: { kind: 'number', number }, key: record.id, session: { model: 'gpt-realtime' } });
    const first = await stack.sim.placeSipCall({ to: number, turns: [{ usage: TURN_A }] });
    await expect.poll(() => sipState(first.callId).turnsDone).toBe(1);
    const second = await stack.sim.placeSipCall({ to: number, turns: [{ usage: TURN_A }] });
    await expect.poll(() => [sipState(second.callId).state, sipState(second.callId).rejectStatus]).toEqual(['rejected', 486]);
    expect(stack.sim.hangUpCall(first.callId)).toBe(true);
    await stack.idle();
    const book = await stack.view.book(record.id);
    expect(book.sessions).toHaveLength(1);
    expect(book.settlements).toEqual([expect.objectContaining({ totalNano: realtimeInvoice('gpt-realtime', TURN_A), chargeCount: 1 })]);
  });

  it('refuses a webhook signed with another secret, with an altered body or a stale timestamp, and ignores a replay', async () => {
    const carol = await tenant();
    await stack.ledger.addRoute({ match: { kind: 'number', number: carol.number }, key: carol.record.id, session: { model: 'gpt-realtime' } });
    const body = JSON.stringify({ object: 'event', id: 'evt_forged', type: 'realtime.call.incoming', created_at: Math.floor(Date.now() / 1000), data: { call_id: 'rtc_forged', sip_headers: [{ name: 'To', value: `<sip:${carol.number}@sip.api.openai.com>` }] } });
    const post = (payload: string, secret: string, id: string, at: Date) =>
      fetch(webhookUrl(), { method: 'POST', headers: { 'Content-Type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(secret).sign(id, at, payload) }, body: payload });
    const rowsBefore = webhookRows();
    const sessionsBefore = sipSessions().length;
    const wrongSecret = await post(body, WRONG_SECRET, 'wh_wrong', new Date());
    const signed = new Webhook(OPENAI_SECRET).sign('wh_altered', new Date(), body);
    const altered = await fetch(webhookUrl(), { method: 'POST', headers: { 'webhook-id': 'wh_altered', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': signed }, body: body.replace('rtc_forged', 'rtc_altered') });
    const stale = await post(body, OPENAI_SECRET, 'wh_stale', new Date(Date.now() - 10 * 60_000));
    for (const response of [wrongSecret, altered, stale]) {
      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({ error: expect.objectContaining({ code: 'invalid_webhook_signature', type: 'invalid_request_error' }) });
    }
    expect(webhookRows()).toBe(rowsBefore);
    expect(sipSessions().length).toBe(sessionsBefore);
    expect(await (await fetch(`${stack.httpUrl}/metrics`)).text()).toMatch(/relay_sip_webhooks_refused_total\{verdict="invalid_signature"\} 3/);

    const placed = await stack.sim.placeSipCall({ to: carol.number, turns: [{ usage: TURN_A }] });
    await expect.poll(() => sipState(placed.callId).turnsDone).toBe(1);
    const replay = await stack.sim.redeliverCall(placed.callId);
    expect(replay).toEqual({ callId: placed.callId, webhookId: placed.webhookId, webhook: { status: 200 } });
    expect(stack.logs.some((line) => line.event === 'sip.webhook' && line.verdict === 'replayed')).toBe(true);
    expect(sipSessions().filter((s) => s.key_id === carol.record.id)).toHaveLength(1);
    stack.sim.hangUpCall(placed.callId);
    await stack.idle();
    const book = await stack.view.book(carol.record.id);
    expect(book.settlements).toEqual([expect.objectContaining({ totalNano: realtimeInvoice('gpt-realtime', TURN_A), chargeCount: 1 })]);
  });

  it('forwards a call to its tenant re-signed; the tenant accepts through the relay and steers it over ?call_id= without a second charge', async () => {
    const receiver = await startTenantReceiver(TENANT_SECRET);
    try {
      const dave = await tenant();
      const eve = await tenant();
      await stack.ledger.addRoute({ match: { kind: 'number', number: dave.number }, key: dave.record.id, session: { model: 'gpt-realtime' }, webhookUrl: receiver.url, webhookSecret: TENANT_SECRET });
      const placed = await stack.sim.placeSipCall({ to: dave.number });
      await expect.poll(() => receiver.events.length).toBe(1);
      const relayCallId = receiver.events[0]!.callId;
      expect(relayCallId).toMatch(/^rtc_[0-9a-f]{32}$/);
      expect(relayCallId).not.toBe(placed.callId);
      expect(receiver.events[0]!.headers).toContainEqual({ name: 'To', value: `<sip:${dave.number}@sip.api.openai.com>` });
      expect(receiver.refused).toBe(0);
      expect(sipState(placed.callId).state).toBe('ringing');

      // Another tenant can neither decide nor join the call, and learns nothing of it.
      const stolen = await control(relayCallId, 'accept', eve.key, { model: 'gpt-realtime' });
      expect(stolen.status).toBe(404);
      expect(await stolen.json()).toEqual({ error: expect.objectContaining({ code: 'call_not_found' }) });
      expect((await control(relayCallId, 'reject', eve.key)).status).toBe(404);
      expect(sipState(placed.callId).state).toBe('ringing');

      const accepted = await control(relayCallId, 'accept', dave.key, { type: 'realtime', model: 'gpt-realtime', instructions: 'Dave speaking' });
      expect(accepted.status).toBe(200);
      expect(sipState(placed.callId).session).toMatchObject({ instructions: 'Dave speaking' });
      expect((await control(relayCallId, 'accept', dave.key)).status).toBe(409);

      const intruder = new WebSocket(`${stack.wsUrl}/v1/realtime?call_id=${relayCallId}`, { headers: { Authorization: `Bearer ${eve.key}` } });
      const refusedStatus = await new Promise<number>((resolve) => intruder.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
      expect(refusedStatus).toBe(404);

      const joined = new WebSocket(`${stack.wsUrl}/v1/realtime?call_id=${relayCallId}`, { headers: { Authorization: `Bearer ${dave.key}` } });
      const events: Array<Record<string, unknown>> = [];
      joined.on('message', (data) => events.push(JSON.parse(String(data)) as Record<string, unknown>));
      await new Promise((resolve, reject) => joined.once('open', resolve).once('error', reject));
      await expect.poll(() => events.some((e) => e.type === 'session.created')).toBe(true);
      joined.send(JSON.stringify({ type: 'response.create', response: { metadata: { sim_usage: JSON.stringify(TURN_B) } } }));
      await expect.poll(() => events.filter((e) => e.type === 'response.done').length).toBe(1);
      await expect.poll(async () => (await stack.view.book(dave.record.id)).charges.length).toBe(1);

      const hangup = await control(relayCallId, 'hangup', dave.key);
      expect(hangup.status).toBe(200);
      await new Promise((resolve) => joined.once('close', resolve));
      await stack.idle();
      const book = await stack.view.book(dave.record.id);
      const expected = realtimeInvoice('gpt-realtime', TURN_B);
      expect(book.charges.map((c) => c.costNano)).toEqual([expected]);
      expect(book.settlements).toEqual([expect.objectContaining({ totalNano: expected, chargeCount: 1, endReason: 'client_closed' })]);
      expect((await stack.view.book(eve.record.id)).charges).toEqual([]);
    } finally {
      await receiver.close();
    }
  });

  it('lets a tenant reject or refer its ringing call, and rejects a call whose tenant webhook fails', async () => {
    const receiver = await startTenantReceiver(TENANT_SECRET);
    try {
      const frank = await tenant();
      await stack.ledger.addRoute({ match: { kind: 'number', number: frank.number }, key: frank.record.id, session: { model: 'gpt-realtime' }, webhookUrl: receiver.url, webhookSecret: TENANT_SECRET });
      const first = await stack.sim.placeSipCall({ to: frank.number });
      const second = await stack.sim.placeSipCall({ to: frank.number });
      await expect.poll(() => receiver.events.length).toBe(2);
      const [a, b] = receiver.events.map((e) => e.callId);
      // A client secret of the tenant's key, as a browser would hold it, cannot answer the tenant's calls.
      const { secret } = await stack.ledger.createClientSecret({ keyId: frank.record.id, expiresAt: new Date(Date.now() + 60_000), session: { type: 'realtime', model: 'gpt-realtime' }, spendCapNano: null });
      const bySecret = await control(a!, 'accept', secret, { type: 'realtime', model: 'gpt-realtime' });
      expect([bySecret.status, ((await bySecret.json()) as { error: { code: string } }).error.code]).toEqual([403, 'client_secret_not_allowed']);
      expect((await control(a!, 'reject', frank.key, { status_code: 603 })).status).toBe(200);
      expect((await control(b!, 'refer', frank.key, { target_uri: 'javascript:alert(1)' })).status).toBe(400);
      expect((await control(b!, 'refer', frank.key, { target_uri: 'tel:+15550111111' })).status).toBe(200);
      expect([sipState(first.callId).state, sipState(first.callId).rejectStatus]).toEqual(['rejected', 603]);
      expect([sipState(second.callId).state, sipState(second.callId).referTarget]).toEqual(['referred', 'tel:+15550111111']);

      const grace = await tenant();
      await stack.ledger.addRoute({ match: { kind: 'number', number: grace.number }, key: grace.record.id, session: { model: 'gpt-realtime' }, webhookUrl: receiver.url, webhookSecret: WRONG_SECRET });
      const third = await stack.sim.placeSipCall({ to: grace.number });
      await expect.poll(() => [sipState(third.callId).state, sipState(third.callId).rejectStatus]).toEqual(['rejected', 480]);
      expect(receiver.refused).toBe(1);
      expect((await stack.view.book(frank.record.id)).sessions).toEqual([]);
      expect((await stack.view.book(grace.record.id)).sessions).toEqual([]);
    } finally {
      await receiver.close();
    }
  });

  it('hangs up a call whose key runs out of balance, one response past it at most', async () => {
    const cost = realtimeInvoice('gpt-realtime', TURN_A);
    const { record } = await stack.createKey({ balanceNano: cost - 1n });
    const number = freshNumber();
    await stack.ledger.addRoute({ match: { kind: 'number', number }, key: record.id, session: { model: 'gpt-realtime' } });
    const placed = await stack.sim.placeSipCall({ to: number, turns: [{ usage: TURN_A }, { usage: TURN_A }, { usage: TURN_A }] });
    await expect.poll(() => sipState(placed.callId).state).toBe('ended');
    await stack.idle();
    const book = await stack.view.book(record.id);
    // The turn that spent the balance is charged in full; a response the caller had already started may finish, nothing after it.
    expect(book.charges[0]!.costNano).toBe(cost);
    expect(book.charges.length).toBeLessThanOrEqual(2);
    const total = sum(book.charges.map((c) => c.costNano));
    expect(book.settlements).toEqual([expect.objectContaining({ totalNano: total, chargeCount: book.charges.length })]);
    expect(book.settlements[0]!.endReason).toContain('insufficient_quota');
    expect(book.balanceNano).toBe(cost - 1n - total);
    expect(sipState(placed.callId).turnsDone).toBeLessThan(3);
  });

  describe('faults settle each call once', () => {
    it('a refused sideband', async () => {
      const t = await tenant();
      await stack.ledger.addRoute({ match: { kind: 'number', number: t.number }, key: t.record.id, session: { model: 'gpt-realtime' } });
      stack.sim.queueHandshakeFault({ kind: 'refuse', status: 500 });
      const placed = await stack.sim.placeSipCall({ to: t.number, turns: [{ usage: TURN_A }] });
      await expect.poll(async () => (await stack.view.book(t.record.id)).settlements.length).toBe(1);
      await stack.idle();
      const book = await stack.view.book(t.record.id);
      expect(book.charges).toEqual([]);
      expect(book.settlements).toEqual([expect.objectContaining({ totalNano: 0n, chargeCount: 0 })]);
      expect(book.settlements[0]!.endReason).toMatch(/^dial_failed/);
      // The accepted call was hung up: nothing keeps running upstream unmetered.
      await expect.poll(() => sipState(placed.callId).state).toBe('ended');
    });

    it('a sideband dropped mid-call', async () => {
      const t = await tenant();
      await stack.ledger.addRoute({ match: { kind: 'number', number: t.number }, key: t.record.id, session: { model: 'gpt-realtime' } });
      const placed = await stack.sim.placeSipCall({ to: t.number, turns: [{ usage: TURN_A }] });
      await expect.poll(() => sipState(placed.callId).turnsDone).toBe(1);
      await expect.poll(async () => (await stack.view.book(t.record.id)).charges.length).toBe(1);
      expect(stack.sim.dropCallSidebands(placed.callId)).toBe(1);
      await expect.poll(async () => (await stack.view.book(t.record.id)).settlements.length).toBe(1);
      await stack.idle();
      const book = await stack.view.book(t.record.id);
      expect(book.settlements).toEqual([expect.objectContaining({ totalNano: realtimeInvoice('gpt-realtime', TURN_A), chargeCount: 1 })]);
      await expect.poll(() => sipState(placed.callId).state).toBe('ended');
    });

    it('the caller hanging up', async () => {
      const t = await tenant();
      await stack.ledger.addRoute({ match: { kind: 'number', number: t.number }, key: t.record.id, session: { model: 'gpt-realtime' } });
      const placed = await stack.sim.placeSipCall({ to: t.number, turns: [{ usage: TURN_B }] });
      await expect.poll(() => sipState(placed.callId).turnsDone).toBe(1);
      expect(stack.sim.hangUpCall(placed.callId)).toBe(true);
      await expect.poll(async () => (await stack.view.book(t.record.id)).settlements.length).toBe(1);
      await stack.idle();
      const book = await stack.view.book(t.record.id);
      expect(book.settlements).toEqual([expect.objectContaining({ status: 'settled', totalNano: realtimeInvoice('gpt-realtime', TURN_B), chargeCount: 1, endReason: 'upstream_closed' })]);
    });
  });
});
