/**
 * Ephemeral client secrets as an app uses them: its server mints an `ek_…`
 * with the official `openai` SDK against the relay, and a browser or phone
 * opens its session with it. Real relay, real ledger (SQLite, and
 * PostgreSQL when one answers), the upstream simulator, real Chromium.
 */
import { createHash } from 'node:crypto';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { respond } from '../billing/session-bill.js';
import { realtimeInvoice, usage, usdToNano } from '../billing/invoice.js';
import { HAVE_CHROMIUM, openChromium, servePages, type ServedPages } from '../helpers/chromium.js';
import { TestClient } from '../helpers/client.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, type ScratchSchema } from '../helpers/postgres.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { startSimulator } from '../../src/simulator/index.js';

const ADMIN_TOKEN = 'admin-token-for-client-secret-tests';

function sdk(stack: LedgerTestRelay, apiKey: string): OpenAI {
  return new OpenAI({ apiKey, baseURL: `${stack.httpUrl}/v1`, maxRetries: 0 });
}

/** A Node client that offers the secret as a browser would: in a subprotocol, with no header. */
function connectWithSubprotocol(stack: LedgerTestRelay, secret: string, query = ''): TestClient {
  return TestClient.connect(stack.realtimeUrl(query), { protocols: ['realtime', `openai-insecure-api-key.${secret}`] });
}

/** What the SDK threw, as OpenAI's envelope. */
async function apiError(promise: Promise<unknown>): Promise<{ status: number; code: string; type: string; param: string | null; message: string }> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OpenAI.APIError);
  const { status, code, type, param, message } = error as InstanceType<typeof OpenAI.APIError>;
  return { status: status!, code: code!, type: type!, param: param ?? null, message };
}

async function post(stack: LedgerTestRelay, path: string, key: string, body: unknown): Promise<{ status: number; body: { error: Record<string, unknown> } }> {
  const response = await fetch(`${stack.httpUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as { error: Record<string, unknown> } };
}

describe('client secrets minted with the openai SDK', () => {
  let stack: LedgerTestRelay;
  beforeAll(async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, settings: { adminToken: ADMIN_TOKEN } });
  });
  afterEach(async () => {
    vi.useRealTimers();
    await stack?.disconnectAll();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("answers in OpenAI's shape, and the secret opens a session of its model, billed exactly to its key", async () => {
    const { key, record } = await stack.createKey();
    const before = Math.floor(Date.now() / 1000);
    const minted = await sdk(stack, key).realtime.clientSecrets.create({
      expires_after: { anchor: 'created_at', seconds: 120 },
      session: { type: 'realtime', model: 'gpt-realtime', instructions: 'Be brief.' },
    });
    expect(minted.value).toMatch(/^ek_[A-Za-z0-9_-]{43}$/);
    expect(minted.expires_at - before).toBeGreaterThanOrEqual(119);
    expect(minted.expires_at - before).toBeLessThanOrEqual(121);
    expect(minted.session).toMatchObject({ object: 'realtime.session', type: 'realtime', model: 'gpt-realtime', instructions: 'Be brief.' });
    expect(minted.session.id).toMatch(/^sess_/);

    // No ?model=: the secret's model is the session's, and its configuration is applied before the client's first event.
    const client = connectWithSubprotocol(stack, minted.value);
    await client.next('session.created');
    expect(client.socket.protocol).toBe('realtime');
    const updated = await client.next('session.updated');
    expect(updated.session).toMatchObject({ type: 'realtime', model: 'gpt-realtime', instructions: 'Be brief.' });
    const u = usage({ text: [12, 0], out: [30, 0] });
    await respond(client, u);
    await respond(client, u);
    client.close();
    await stack.idle();

    const book = await stack.view.book(record.id);
    const cost = realtimeInvoice('gpt-realtime', u);
    expect(book.charges.map((c) => c.costNano)).toEqual([cost, cost]);
    expect(book.settlements).toEqual([expect.objectContaining({ totalNano: 2n * cost, endReason: 'client_closed' })]);
    expect(book.balanceNano).toBe(record.balanceNano - 2n * cost);
    expect(book.sessions).toHaveLength(1);
    expect(book.sessions[0]!.model).toBe('gpt-realtime');
    // Neither the key nor the secret is ever written to the log.
    const logged = JSON.stringify(stack.logs);
    expect(logged).not.toContain(minted.value.slice(3));
    expect(logged).not.toContain(key.slice(3));
  });

  it('keeps only the SHA-256 of a secret in the ledger, and records the secret each session was opened with', async () => {
    const { key, record } = await stack.createKey();
    const minted = await sdk(stack, key).realtime.clientSecrets.create({ session: { type: 'realtime', model: 'gpt-realtime' } });
    const client = TestClient.connect(stack.realtimeUrl('model=gpt-realtime'), { key: minted.value });
    await client.next('session.created');
    client.close();
    await stack.idle();

    const { readSqlite, sqliteLedgerFile } = await import('../helpers/ledger.js');
    const rows = readSqlite(sqliteLedgerFile(stack.dataDir), (db) => ({
      secrets: db.prepare('SELECT * FROM client_secrets WHERE key_id = ?').all(record.id) as Array<Record<string, unknown>>,
      sessions: db.prepare('SELECT client_secret_id FROM sessions WHERE key_id = ?').all(record.id) as Array<Record<string, unknown>>,
    }));
    expect(rows.secrets).toHaveLength(1);
    expect(rows.secrets[0]!.secret_hash).toBe(createHash('sha256').update(minted.value).digest('hex'));
    const dumped = JSON.stringify(rows.secrets, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
    expect(dumped).not.toContain(minted.value.slice(3));
    expect(rows.sessions).toEqual([{ client_secret_id: rows.secrets[0]!.id }]);
  });

  it("refuses bad requests in OpenAI's envelope, naming the parameter", async () => {
    const { key } = await stack.createKey();
    const secrets = sdk(stack, key).realtime.clientSecrets;
    expect(await apiError(secrets.create({ expires_after: { anchor: 'created_at', seconds: 5 } }))).toMatchObject({ status: 400, code: 'integer_below_min_value', type: 'invalid_request_error', param: 'expires_after.seconds' });
    expect(await apiError(secrets.create({ expires_after: { anchor: 'created_at', seconds: 7201 } }))).toMatchObject({ status: 400, code: 'integer_above_max_value', param: 'expires_after.seconds' });
    expect(await apiError(secrets.create({ expires_after: { anchor: 'now' as 'created_at', seconds: 60 } }))).toMatchObject({ status: 400, code: 'invalid_value', param: 'expires_after.anchor' });
    expect(await apiError(secrets.create({ expires_after: { seconds: 60.5 } }))).toMatchObject({ status: 400, code: 'invalid_type', param: 'expires_after.seconds' });
    expect(await apiError(secrets.create({ session: { type: 'chat' } as never }))).toMatchObject({ status: 400, code: 'invalid_value', param: 'session.type' });
    expect(await apiError(secrets.create({ session: { type: 'realtime', model: 42 } as never }))).toMatchObject({ status: 400, code: 'invalid_type', param: 'session.model' });
    expect(await apiError(secrets.create({ session: { type: 'realtime', model: 'gpt-nonexistent' } }))).toMatchObject({ status: 400, code: 'model_not_found', param: 'session.model' });
    expect(await apiError(secrets.create({ session: { type: 'realtime' }, surprise: true } as never))).toMatchObject({ status: 400, code: 'unknown_parameter', param: 'surprise' });
    expect(await apiError(secrets.create({ relay: { spend_cap: 0.5 } } as never))).toMatchObject({ status: 400, code: 'invalid_amount', param: 'relay.spend_cap' });
    expect(await apiError(secrets.create({ relay: { spend_cap: '0' } } as never))).toMatchObject({ status: 400, code: 'invalid_amount', param: 'relay.spend_cap' });
    expect(await apiError(sdk(stack, 'rk_not_a_key').realtime.clientSecrets.create({}))).toMatchObject({ status: 401, code: 'invalid_api_key' });
  });

  it("defaults to OpenAI's expiry and model, and mints transcription secrets", async () => {
    const { key } = await stack.createKey();
    const now = Math.floor(Date.now() / 1000);
    const plain = await sdk(stack, key).realtime.clientSecrets.create({});
    expect(plain.expires_at - now).toBeGreaterThanOrEqual(599);
    expect(plain.expires_at - now).toBeLessThanOrEqual(601);
    expect(plain.session).toMatchObject({ type: 'realtime', object: 'realtime.session', model: 'gpt-realtime' });

    const transcription = await sdk(stack, key).realtime.clientSecrets.create({
      session: { type: 'transcription', audio: { input: { transcription: { model: 'gpt-4o-mini-transcribe' } } } },
    });
    expect(transcription.session).toMatchObject({ type: 'transcription', object: 'realtime.transcription_session', audio: { input: { transcription: { model: 'gpt-4o-mini-transcribe' } } } });
    const client = connectWithSubprotocol(stack, transcription.value);
    await client.next('session.created');
    const updated = await client.next('session.updated');
    expect(updated.session).toMatchObject({ type: 'transcription', audio: { input: { transcription: { model: 'gpt-4o-mini-transcribe' } } } });
    client.close();
    await stack.idle();
    const sessions = stack.sessions();
    expect(sessions.at(-1)!.model).toBe('gpt-4o-mini-transcribe');
    expect(stack.sim.handshakes.at(-1)!.query).toMatchObject({ intent: 'transcription' });
  });

  it('refuses a secret that is wrong, expired, or asked for another model, each with its own code', async () => {
    const { key } = await stack.createKey();
    const minted = await sdk(stack, key).realtime.clientSecrets.create({ expires_after: { anchor: 'created_at', seconds: 10 }, session: { type: 'realtime', model: 'gpt-realtime' } });

    const wrong = TestClient.connect(stack.realtimeUrl(''), { key: `${minted.value.slice(0, -2)}xx` });
    await wrong.closedWith();
    expect(wrong.unexpected?.status).toBe(401);
    expect(JSON.parse(wrong.unexpected!.body).error.code).toBe('invalid_api_key');

    const otherModel = TestClient.connect(stack.realtimeUrl('model=gpt-realtime-mini'), { key: minted.value });
    await otherModel.closedWith();
    expect(otherModel.unexpected?.status).toBe(400);
    expect(JSON.parse(otherModel.unexpected!.body).error.code).toBe('client_secret_mismatch');

    const sameModel = TestClient.connect(stack.realtimeUrl('model=gpt-realtime'), { key: minted.value });
    await sameModel.next('session.created');
    await respond(sameModel, usage({ text: [1, 0] }));
    // Nothing to apply beyond its model: the client sees only what it asked for.
    expect(sameModel.count('session.updated')).toBe(0);
    sameModel.close();
    await stack.idle();

    // Eleven seconds later by the relay's clock.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 11_000 });
    const expired = TestClient.connect(stack.realtimeUrl(''), { key: minted.value });
    await expired.closedWith();
    expect(expired.unexpected?.status).toBe(401);
    expect(JSON.parse(expired.unexpected!.body).error).toMatchObject({ code: 'client_secret_expired', type: 'invalid_request_error' });
    // A browser reads why, after the upgrade.
    const expiredInBrowser = connectWithSubprotocol(stack, minted.value);
    const error = await expiredInBrowser.next('error');
    expect(error.error).toMatchObject({ code: 'client_secret_expired' });
    expect(await expiredInBrowser.closedWith()).toEqual({ code: 1008, reason: 'client_secret_expired' });
  });

  it('refuses a secret on the admin API and for minting another secret', async () => {
    const { key } = await stack.createKey();
    const minted = await sdk(stack, key).realtime.clientSecrets.create({});
    expect(await apiError(sdk(stack, minted.value).realtime.clientSecrets.create({}))).toMatchObject({ status: 403, code: 'client_secret_not_allowed' });
    const admin = await fetch(`${stack.httpUrl}/admin/keys`, { headers: { authorization: `Bearer ${minted.value}` } });
    expect(admin.status).toBe(403);
    expect(((await admin.json()) as { error: { code: string } }).error.code).toBe('client_secret_not_allowed');
    const topUp = await post(stack, '/admin/keys/anything/topup', minted.value, { amount: '10' });
    expect(topUp).toMatchObject({ status: 403, body: { error: { code: 'client_secret_not_allowed' } } });
  });

  it("is bound to its key: a disabled key's secrets open nothing", async () => {
    const { key, record } = await stack.createKey();
    const minted = await sdk(stack, key).realtime.clientSecrets.create({});
    await stack.ledger.setDisabled(record.id, true);
    const client = TestClient.connect(stack.realtimeUrl(''), { key: minted.value });
    await client.closedWith();
    expect(JSON.parse(client.unexpected!.body).error.code).toBe('key_disabled');
  });
});

describe('client secrets and model aliases', () => {
  it('resolves an alias when minting and when connecting, as the handshake does', async () => {
    const sim = await startSimulator({ chunkIntervalMs: 0 });
    const stack = await startTestRelay({
      upstreams: { upstreams: [{ name: 'openai', kind: 'openai', baseUrl: `${sim.url.replace(/^ws/, 'http')}/v1`, apiKey: 'sk-sim' }], aliases: { fast: 'gpt-realtime-mini' } },
    });
    try {
      const { key } = await stack.createKey();
      const minted = await sdk(stack, key).realtime.clientSecrets.create({ session: { type: 'realtime', model: 'fast' } });
      expect(minted.session).toMatchObject({ model: 'gpt-realtime-mini' });
      // The alias names the secret's model: accepted; the model it does not name is not.
      const byAlias = TestClient.connect(stack.realtimeUrl('model=fast'), { key: minted.value });
      await byAlias.next('session.created');
      byAlias.close();
      await stack.idle();
      expect(sim.handshakes.at(-1)!.query).toEqual({ model: 'gpt-realtime-mini' });
      const other = TestClient.connect(stack.realtimeUrl('model=gpt-realtime'), { key: minted.value });
      await other.closedWith();
      expect(JSON.parse(other.unexpected!.body).error.code).toBe('client_secret_mismatch');
      // A realtime secret does not open a transcription session.
      const transcription = TestClient.connect(stack.realtimeUrl('intent=transcription'), { key: minted.value });
      await transcription.closedWith();
      expect(JSON.parse(transcription.unexpected!.body).error.code).toBe('client_secret_mismatch');
    } finally {
      await stack.close();
      await sim.close();
    }
  });
});

/**
 * A secret's spend cap bounds all of its sessions together: each session may
 * spend what the secret has left when it opens; a spent secret opens nothing.
 */
function spendCapSuite(name: string, open: () => Promise<LedgerTestRelay | null>): void {
  describe(name, () => {
    let stack: LedgerTestRelay | null;
    beforeAll(async () => {
      stack = await open();
    });
    afterAll(async () => {
      await stack?.close();
    });

    it('ends sessions with spend_cap at what the secret has left, and refuses it once spent', async (context) => {
      if (!stack) return context.skip();
      const { key, record } = await stack.createKey();
      const cap = usdToNano('0.02');
      const minted = await sdk(stack, key).realtime.clientSecrets.create({ session: { type: 'realtime', model: 'gpt-realtime' }, relay: { spend_cap: '0.02' } } as never);
      const u = usage({ out: [0, 200] }); // 200 audio tokens × 64 USD per 1M = 0.0128 USD
      const cost = realtimeInvoice('gpt-realtime', u);

      // The first session spends 0.0128 of 0.02 and leaves.
      const first = connectWithSubprotocol(stack, minted.value);
      await first.next('session.created');
      await respond(first, u);
      expect(first.count('error')).toBe(0);
      first.close();
      await stack.idle();

      // The second may spend the 0.0072 left: its first response crosses it and ends the session.
      const second = connectWithSubprotocol(stack, minted.value);
      await second.next('session.created');
      await respond(second, u);
      const error = await second.next('error');
      expect(error.error).toMatchObject({ code: 'session_spend_cap_exceeded', type: 'insufficient_quota' });
      expect(await second.closedWith()).toMatchObject({ code: 1008 });
      await stack.idle();

      // Spent: refused at the handshake.
      const third = TestClient.connect(stack.realtimeUrl(''), { key: minted.value });
      await third.closedWith();
      expect(third.unexpected?.status).toBe(429);
      expect(JSON.parse(third.unexpected!.body).error).toMatchObject({ code: 'client_secret_spend_cap_exceeded', type: 'insufficient_quota' });

      const book = await stack.view.book(record.id);
      expect(book.charges.map((c) => c.costNano)).toEqual([cost, cost]);
      const total = book.settlements.reduce((sum, s) => sum + s.totalNano, 0n);
      expect(total).toBe(2n * cost);
      // Never more than the cap and one response past it.
      expect(total).toBeLessThanOrEqual(cap + cost);
      expect(book.settlements.map((s) => s.endReason).sort()).toEqual(['cancelled:spend_cap', 'client_closed']);
      expect(book.balanceNano).toBe(record.balanceNano - 2n * cost);
    });

    it('shares the cap between sessions open at the same time', async (context) => {
      if (!stack) return context.skip();
      const { key, record } = await stack.createKey();
      const cap = usdToNano('0.02');
      const minted = await sdk(stack, key).realtime.clientSecrets.create({ relay: { spend_cap: '0.02' } } as never);
      const u = usage({ out: [0, 200] }); // 0.0128 USD each
      const cost = realtimeInvoice('gpt-realtime', u);
      const a = connectWithSubprotocol(stack, minted.value);
      const b = connectWithSubprotocol(stack, minted.value);
      await Promise.all([a.next('session.created'), b.next('session.created')]);

      // Each opened when 0.02 was left; a's response leaves 0.0072 to both.
      await respond(a, u);
      expect(a.count('error')).toBe(0);
      // b's response crosses the secret's cap: b ends.
      await respond(b, u);
      expect((await b.next('error')).error).toMatchObject({ code: 'session_spend_cap_exceeded' });
      expect(await b.closedWith()).toMatchObject({ code: 1008 });
      // a may not start another: the secret is spent. The response is refused, not forwarded.
      a.send({ type: 'response.create', response: { output_modalities: ['text'] } });
      expect((await a.next('error')).error).toMatchObject({ code: 'session_spend_cap_exceeded' });
      a.close();
      await stack.idle();

      const book = await stack.view.book(record.id);
      expect(book.charges.map((c) => c.costNano)).toEqual([cost, cost]);
      expect(book.settlements.reduce((sum, s) => sum + s.totalNano, 0n)).toBeLessThanOrEqual(cap + cost);
    });
  });
}

spendCapSuite('a client secret spend cap on SQLite', () => startTestRelay({ simulator: { chunkIntervalMs: 0 } }));

let schema: ScratchSchema | null = null;
spendCapSuite('a client secret spend cap on PostgreSQL', async () => {
  const unavailable = await probePostgres();
  if (unavailable) {
    if (POSTGRES_REQUIRED) throw new Error(unavailable);
    console.warn(`skipping the PostgreSQL client secret test: ${unavailable}`);
    return null;
  }
  schema = await createScratchSchema();
  const stack = await startTestRelay({ simulator: { chunkIntervalMs: 0 }, postgres: schema });
  const close = stack.close.bind(stack);
  return Object.assign(stack, {
    async close() {
      await close();
      await schema?.drop();
    },
  });
});

/** The page an app serves: it fetched an `ek_…` from its own server and opens the session with it. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>a client secret in a browser</title>
<dl><dt>events</dt><dd id="events"></dd><dt>close</dt><dd id="close"></dd></dl>
<script>
  const params = new URLSearchParams(location.search);
  const events = [];
  const ws = new WebSocket(params.get('url'), ['realtime', 'openai-insecure-api-key.' + params.get('secret')]);
  ws.onmessage = (message) => {
    const event = JSON.parse(message.data);
    events.push(event.type);
    document.getElementById('events').textContent = events.join(' ');
    if (event.type === 'session.created') ws.send(JSON.stringify({ type: 'response.create', response: { output_modalities: ['text'] } }));
    if (event.type === 'response.done') ws.close(1000, 'done');
  };
  ws.onclose = (close) => { document.getElementById('close').textContent = close.code + ' ' + close.reason; };
</script>`;

describe.skipIf(!HAVE_CHROMIUM)('a client secret in Chromium', () => {
  let stack: LedgerTestRelay;
  let pages: ServedPages;
  beforeAll(async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    pages = await servePages(PAGE);
  });
  afterAll(async () => {
    await pages?.close();
    await stack?.close();
  });

  it('opens a session with the secret in a subprotocol, and the response is billed to the key that minted it', async () => {
    const { key, record } = await stack.createKey();
    const minted = await sdk(stack, key).realtime.clientSecrets.create({ session: { type: 'realtime', model: 'gpt-realtime' } });
    const browser = await openChromium();
    try {
      await browser.page.goto(`${pages.url}?${new URLSearchParams({ url: stack.realtimeUrl(''), secret: minted.value })}`);
      await browser.page.locator('#close').filter({ hasText: /\d/ }).waitFor({ timeout: 10_000 });
      const events = (await browser.page.textContent('#events'))!.split(' ');
      expect(events[0]).toBe('session.created');
      expect(events.at(-1)).toBe('response.done');
      expect(await browser.page.textContent('#close')).toBe('1000 done');
    } finally {
      await browser.close();
    }
    await stack.idle();
    const book = await stack.view.book(record.id);
    expect(book.charges).toHaveLength(1);
    expect(book.settlements).toEqual([expect.objectContaining({ totalNano: book.charges[0]!.costNano, chargeCount: 1 })]);
    expect(book.balanceNano).toBe(record.balanceNano - book.charges[0]!.costNano);
  });
});
