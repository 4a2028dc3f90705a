/**
 * Session traces from a relay process to a real OTLP/HTTP receiver: each
 * session is one trace (root, dial attempts, responses, settlement), its cost
 * is the ledger's, a failover shows the failed attempt, nothing secret or
 * audio is exported, and a relay without an endpoint loads no OpenTelemetry.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { TestClient } from '../helpers/client.js';
import { allSettlements, chargeRow, readSqlite, sqliteLedgerFile, type ChargeRow } from '../helpers/ledger.js';
import { runRelay, spawnRelay, tempDataDir, type RelayProcess } from '../helpers/relay-process.js';

type AnyValue = { stringValue?: string; intValue?: string | number; doubleValue?: number; boolValue?: boolean };
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: Array<{ key: string; value: AnyValue }>;
  status?: { code?: number; message?: string };
}
interface ExportRequest {
  resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: AnyValue }> }; scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
}

/** An OTLP/HTTP receiver on 127.0.0.1: keeps every body posted to /v1/traces, raw and decoded. */
class OtlpReceiver {
  readonly bodies: string[] = [];
  readonly contentTypes: string[] = [];
  readonly authorizations: string[] = [];
  private server: Server | null = null;
  url = '';

  async listen(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== '/v1/traces') {
          res.writeHead(404).end();
          return;
        }
        this.contentTypes.push(String(req.headers['content-type']));
        this.authorizations.push(String(req.headers.authorization));
        this.bodies.push(Buffer.concat(chunks).toString('utf8'));
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  requests(): ExportRequest[] {
    return this.bodies.map((body) => JSON.parse(body) as ExportRequest);
  }

  spans(): OtlpSpan[] {
    return this.requests().flatMap((r) => r.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)));
  }

  resourceAttributes(): Record<string, unknown> {
    return attributesOf(this.requests()[0]!.resourceSpans[0]!.resource);
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

function valueOf(value: AnyValue): unknown {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  return value.boolValue;
}

function attributesOf(holder: { attributes?: Array<{ key: string; value: AnyValue }> }): Record<string, unknown> {
  return Object.fromEntries((holder.attributes ?? []).map((a) => [a.key, valueOf(a.value)]));
}

/** The nano-USD attribute as sent (an int, as a decimal string in OTLP/JSON). */
function nanoOf(span: OtlpSpan): bigint {
  const value = span.attributes!.find((a) => a.key === 'relay.cost.nano_usd')!.value;
  return BigInt(value.intValue ?? value.stringValue!);
}

const STATUS_OK = 1;
const STATUS_ERROR = 2;

const PRIMARY_KEY = `sk-upstream-primary-${randomBytes(12).toString('hex')}`;
const SECONDARY_KEY = `sk-upstream-secondary-${randomBytes(12).toString('hex')}`;
const COLLECTOR_TOKEN = `collector-${randomBytes(12).toString('hex')}`;
const PRELOAD = ['--import', './test/helpers/loaded-modules.mjs', 'bin/relay.mjs', 'start'];

let relay: RelayProcess | undefined;
let receiver: OtlpReceiver | undefined;
let sims: Simulator[] = [];
const dirs: Array<{ remove(): void }> = [];
afterEach(async () => {
  await relay?.kill();
  await receiver?.close();
  for (const sim of sims) await sim.close();
  for (const dir of dirs.splice(0)) dir.remove();
  relay = undefined;
  receiver = undefined;
  sims = [];
});

/** One session: a little audio in, one spoken response out, then the client closes. Returns what audio it sent and received. */
async function talk(url: string, key: string): Promise<{ sentAudio: string; receivedAudio: string[] }> {
  const client = TestClient.connect(url, { key });
  await client.next('session.created');
  const sentAudio = randomBytes(3200).toString('base64');
  client.send({ type: 'input_audio_buffer.append', audio: sentAudio });
  client.send({ type: 'input_audio_buffer.commit' });
  client.send({ type: 'response.create' });
  await client.next('response.done', 10_000);
  client.close();
  await client.closedWith();
  const receivedAudio = client.events.filter((e) => e.type === 'response.output_audio.delta').map((e) => e.delta as string);
  return { sentAudio, receivedAudio };
}

describe('session traces', () => {
  it('exports each session as one trace: its cost as the ledger has it, a failover’s failed attempt, a refused session’s error, and no key or audio', async () => {
    receiver = new OtlpReceiver();
    await receiver.listen();
    sims = [await startSimulator({ chunkIntervalMs: 1 }), await startSimulator({ chunkIntervalMs: 1 })];
    const [primary, secondary] = sims;
    const data = tempDataDir('relay-traces-');
    dirs.push(data);
    const upstreamsFile = join(data.path, 'upstreams.json');
    writeFileSync(
      upstreamsFile,
      JSON.stringify({
        upstreams: [
          { name: 'primary', kind: 'openai', baseUrl: `${primary!.url.replace(/^ws/, 'http')}/v1`, apiKeyEnv: 'PRIMARY_KEY', priority: 0 },
          { name: 'secondary', kind: 'openai', baseUrl: `${secondary!.url.replace(/^ws/, 'http')}/v1`, apiKeyEnv: 'SECONDARY_KEY', priority: 1 },
        ],
      }),
    );
    const loadedFile = join(data.path, 'loaded-modules.json');
    relay = await spawnRelay({
      dataDir: data.path,
      args: PRELOAD,
      env: {
        RELAY_UPSTREAMS_FILE: upstreamsFile,
        PRIMARY_KEY,
        SECONDARY_KEY,
        LOADED_MODULES_FILE: loadedFile,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer ${COLLECTOR_TOKEN}`,
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test',
        // Nothing is exported before the shutdown: what arrives is what the shutdown flushed.
        OTEL_BSP_SCHEDULE_DELAY: '600000',
      },
    });
    const relayKey = relay.demoKey!;

    const plain = await talk(relay.realtimeUrl(), relayKey);
    primary!.queueHandshakeFault({ kind: 'refuse', status: 503 });
    const failover = await talk(relay.realtimeUrl(), relayKey);
    primary!.queueHandshakeFault({ kind: 'refuse', status: 503 });
    secondary!.queueHandshakeFault({ kind: 'refuse', status: 429 });
    const refused = TestClient.connect(relay.realtimeUrl(), { key: relayKey });
    expect((await refused.closedWith()).code).toBe(1013);
    // Both sessions are settled before the relay is stopped.
    const ledger = sqliteLedgerFile(data.path);
    await relay.waitForLog((l) => l.msg === 'session ended' && l.upstream === 'secondary', 'the failover session’s end');
    await relay.waitForLog((l) => l.msg === 'session ended' && l.upstream === null, 'the refused session’s end');
    expect(receiver.bodies).toEqual([]);
    expect(await relay.stop('SIGTERM')).toEqual({ code: 0, signal: null });

    expect(receiver.contentTypes.every((type) => type.startsWith('application/json'))).toBe(true);
    expect(receiver.authorizations.every((value) => value === `Bearer ${COLLECTOR_TOKEN}`)).toBe(true);
    // The collector's token is sent, never written anywhere.
    expect(JSON.stringify(relay.logs) + relay.stderr()).not.toContain(COLLECTOR_TOKEN);
    expect(relay.logs.some((l) => l.msg === `sending session traces to ${receiver!.url}`)).toBe(true);
    expect(receiver.resourceAttributes()).toMatchObject({ 'service.name': 'realtime-relay', 'deployment.environment.name': 'test' });
    const spans = receiver.spans();
    const allRoots = spans.filter((s) => s.name === 'realtime.session');
    expect(allRoots).toHaveLength(3);
    const roots = allRoots.filter((s) => attributesOf(s)['relay.end_reason'] === 'client_closed');
    expect(roots).toHaveLength(2);
    const settlements = allSettlements(ledger);
    const charges = readSqlite(ledger, (db) => (db.prepare('SELECT * FROM charges').all() as Array<Record<string, unknown>>).map(chargeRow));

    for (const root of roots) {
      const rootAttributes = attributesOf(root);
      const sessionId = rootAttributes['relay.session.id'] as string;
      const settlement = settlements.find((s) => s.sessionId === sessionId)!;
      const sessionCharges = charges.filter((c: ChargeRow) => c.sessionId === sessionId);
      expect(sessionCharges).toHaveLength(1);
      expect(root.parentSpanId ?? '').toBe('');
      expect(root.kind).toBe(2); // SERVER
      expect(rootAttributes).toMatchObject({
        'relay.key.name': 'demo',
        'gen_ai.request.model': 'gpt-realtime',
        'gen_ai.response.model': 'gpt-realtime',
        'relay.transport': 'websocket',
        'relay.end_reason': 'client_closed',
        'relay.responses': 1,
      });
      expect(rootAttributes['relay.frames.in']).toBe(3);
      expect(rootAttributes['relay.frames.out']).toBeGreaterThan(10);
      expect(rootAttributes['relay.bytes.out']).toBeGreaterThan(3000);
      expect(nanoOf(root)).toBe(settlement.totalNano);
      expect(nanoOf(root)).toBe(sessionCharges[0]!.costNano);
      expect(rootAttributes['relay.cost.usd']).toBeCloseTo(Number(settlement.totalNano) / 1e9, 12);

      const children = spans.filter((s) => s !== root && s.traceId === root.traceId);
      expect(children.every((s) => s.parentSpanId === root.spanId)).toBe(true);
      for (const child of children) {
        expect(BigInt(child.startTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(root.startTimeUnixNano));
        expect(BigInt(child.endTimeUnixNano)).toBeLessThanOrEqual(BigInt(root.endTimeUnixNano));
      }
      const [response] = children.filter((s) => s.name === 'realtime.response');
      expect(children.filter((s) => s.name === 'realtime.response')).toHaveLength(1);
      expect(attributesOf(response!)).toMatchObject({ 'relay.response.id': sessionCharges[0]!.itemId, 'relay.response.status': 'completed', 'relay.response.origin': 'client' });
      expect(attributesOf(response!)['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
      expect(nanoOf(response!)).toBe(sessionCharges[0]!.costNano);
      expect(children.filter((s) => s.name === 'ledger.settle')).toHaveLength(1);

      const dials = children.filter((s) => s.name === 'upstream.dial').sort((a, b) => Number(attributesOf(a)['relay.dial.attempt']) - Number(attributesOf(b)['relay.dial.attempt']));
      const dialed = dials.map((s) => ({ ...attributesOf(s), status: s.status?.code ?? 0 }));
      if (rootAttributes['relay.upstream'] === 'primary') {
        expect(dialed).toEqual([{ 'relay.upstream': 'primary', 'relay.dial.attempt': 1, status: STATUS_OK }]);
      } else {
        expect(rootAttributes['relay.upstream']).toBe('secondary');
        expect(dialed).toEqual([
          { 'relay.upstream': 'primary', 'relay.dial.attempt': 1, 'error.type': 'upstream_unavailable', status: STATUS_ERROR },
          { 'relay.upstream': 'secondary', 'relay.dial.attempt': 2, status: STATUS_OK },
        ]);
        // The failed attempt ended before the next one began.
        expect(BigInt(dials[0]!.endTimeUnixNano)).toBeLessThanOrEqual(BigInt(dials[1]!.startTimeUnixNano));
      }
    }
    // No upstream answered: the root failed with the last attempt's code, after two failed dials and a settlement.
    const failed = allRoots.find((s) => !roots.includes(s))!;
    expect(attributesOf(failed)).toMatchObject({ 'relay.end_reason': 'dial_failed:upstream_rate_limited', 'relay.cost.nano_usd': 0, 'error.type': 'upstream_rate_limited' });
    expect(attributesOf(failed)).not.toHaveProperty('relay.upstream');
    expect(failed.status).toMatchObject({ code: STATUS_ERROR, message: 'upstream_rate_limited' });
    const failedChildren = spans.filter((s) => s.traceId === failed.traceId && s !== failed);
    expect(failedChildren.every((s) => s.parentSpanId === failed.spanId)).toBe(true);
    expect(failedChildren.map((s) => [s.name, attributesOf(s)['error.type'] ?? null]).sort()).toEqual([
      ['ledger.settle', null],
      ['upstream.dial', 'upstream_rate_limited'],
      ['upstream.dial', 'upstream_unavailable'],
    ]);

    expect(new Set(allRoots.map((r) => r.traceId)).size).toBe(3);
    expect(spans.every((s) => allRoots.some((r) => r.traceId === s.traceId))).toBe(true);

    const exported = receiver.bodies.join('\n');
    for (const secret of [relayKey, PRIMARY_KEY, SECONDARY_KEY, relayKey.slice(-16)]) expect(exported).not.toContain(secret);
    for (const { sentAudio, receivedAudio } of [plain, failover]) {
      expect(receivedAudio.length).toBeGreaterThan(0);
      for (const audio of [sentAudio, ...receivedAudio]) expect(exported).not.toContain(audio.slice(0, 64));
    }
    // The check of what was loaded sees OpenTelemetry when it is there.
    const loaded = JSON.parse(readFileSync(loadedFile, 'utf8')) as string[];
    for (const name of ['sdk-trace', 'exporter-trace-otlp-http', 'resources']) expect(loaded.some((file) => file.includes(`/@opentelemetry/${name}/`))).toBe(true);
  }, 60_000);

  it('loads no OpenTelemetry module and sends nothing when no endpoint is set', async () => {
    receiver = new OtlpReceiver();
    await receiver.listen();
    const data = tempDataDir('relay-no-traces-');
    dirs.push(data);
    const loadedFile = join(data.path, 'loaded-modules.json');
    // The other variables alone do not switch traces on.
    relay = await spawnRelay({ dataDir: data.path, args: PRELOAD, env: { LOADED_MODULES_FILE: loadedFile, OTEL_SERVICE_NAME: 'relay-without-endpoint', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' } });
    await talk(relay.realtimeUrl(), relay.demoKey!);
    await relay.waitForLog((l) => l.msg === 'session ended', 'the session’s end');
    expect(await relay.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const loaded = JSON.parse(readFileSync(loadedFile, 'utf8')) as string[];
    expect(loaded.length).toBeGreaterThan(10);
    // prom-client requires the API package (a no-op facade, for exemplars) whatever the relay does; the SDK is what tracing adds.
    expect(loaded.filter((file) => file.includes('/@opentelemetry/') && !file.includes('/@opentelemetry/api/'))).toEqual([]);
    expect(loaded.some((file) => file.includes('/prom-client/'))).toBe(true);
    expect(receiver.bodies).toEqual([]);
  }, 30_000);

  it('keeps relaying while the collector is down, says so in the log, and still stops at once', async () => {
    const data = tempDataDir('relay-collector-down-');
    dirs.push(data);
    // A port nothing listens on.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    relay = await spawnRelay({
      dataDir: data.path,
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_BSP_SCHEDULE_DELAY: '50', OTEL_EXPORTER_OTLP_TIMEOUT: '1000' },
    });
    for (let i = 0; i < 2; i++) await talk(relay.realtimeUrl(), relay.demoKey!);
    const warning = await relay.waitForLog((l) => l.msg?.startsWith('spans could not be exported') === true, 'the export warning', 10_000);
    expect(warning).toMatchObject({ level: 40, reason: `connect ECONNREFUSED 127.0.0.1:${port}` });
    expect(relay.logs.filter((l) => l.msg?.startsWith('spans could not be exported') === true)).toHaveLength(1);
    const stopping = Date.now();
    expect(await relay.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(Date.now() - stopping).toBeLessThan(5_000);
    expect(allSettlements(sqliteLedgerFile(data.path))).toHaveLength(2);
  }, 30_000);

  it('refuses to start with a gRPC protocol or an unknown sampler, naming the variable', async () => {
    const data = tempDataDir('relay-bad-traces-');
    dirs.push(data);
    for (const [env, variable] of [
      [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, 'OTEL_EXPORTER_OTLP_PROTOCOL'],
      [{ OTEL_TRACES_SAMPLER: 'sometimes' }, 'OTEL_TRACES_SAMPLER'],
      [{ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' }, 'OTEL_TRACES_SAMPLER_ARG'],
    ] as const) {
      const run = await runRelay(['start'], { RELAY_DATA_DIR: data.path, PORT: '0', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', ...env });
      expect(run.code).toBe(2);
      expect(run.stderr + run.stdout).toContain(variable);
    }
  }, 60_000);
});
