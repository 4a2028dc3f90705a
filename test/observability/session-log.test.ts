import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { formatUsd } from '../../src/billing/prices.js';
import { createLogger } from '../../src/observability/logger.js';
import { TestClient } from '../helpers/client.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import type { LogLine } from '../helpers/log-lines.js';

let stack: LedgerTestRelay | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

// Recognisable in any log line that would carry it.
const AUDIO = Buffer.from('session-log-test-audio-payload;'.repeat(40)).toString('base64');

/** One session: `frames` audio frames, a text response, then the client closes. Returns its id (from its start line) and the lines logged meanwhile. */
async function runSession(stack: LedgerTestRelay, frames: number): Promise<{ sessionId: string | undefined; lines: LogLine[]; client: TestClient }> {
  const from = stack.logs.length;
  const client = stack.connect();
  await client.next('session.created');
  for (let i = 0; i < frames; i++) client.send({ type: 'input_audio_buffer.append', audio: AUDIO });
  client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
  await client.next('response.done');
  client.close();
  await client.closedWith();
  await stack.idle();
  const lines = stack.logs.slice(from);
  const start = lines.find((l) => l.msg === 'session started');
  return { sessionId: start?.sessionId as string | undefined, lines, client };
}

describe('session logs', () => {
  it('writes one line when a session starts and one when it ends, with its record, and never the key or the audio', async () => {
    stack = await startTestRelay({ builtInSimulator: true, settings: { logLevel: 'info' } });
    const { sessionId, lines, client } = await runSession(stack, 30);
    expect(sessionId).toMatch(/^sess_/);
    const mine = stack.logs.filter((l) => l.sessionId === sessionId);
    expect(mine.map((l) => l.msg)).toEqual(['session started', 'session ended']);

    expect(mine[0]).toMatchObject({ event: 'session.start', keyName: 'demo', model: 'gpt-realtime' });
    const end = mine[1]!;
    const [settlement] = stack.settlements();
    expect(end).toMatchObject({
      event: 'session.end',
      keyName: 'demo',
      model: 'gpt-realtime',
      servedModel: 'gpt-realtime',
      upstream: 'simulator',
      endReason: 'client_closed',
      clientCloseCode: 1000,
      framesIn: 31,
      framesOut: client.raw.length,
      bytesOut: client.raw.reduce((n, frame) => n + frame.byteLength, 0),
      usage: { responses: 1, transcriptions: 0 },
      costUsd: formatUsd(settlement!.totalNano),
    });
    expect(typeof end.durationMs).toBe('number');
    expect(typeof end.upstreamCloseCode).toBe('number');
    expect(end.bytesIn as number).toBeGreaterThan(30 * AUDIO.length);
    expect((end.usage as { outputTokens: number }).outputTokens).toBeGreaterThan(0);
    expect(settlement!.totalNano).toBeGreaterThan(0n);

    const text = lines.map((l) => JSON.stringify(l)).join('\n');
    expect(text).not.toContain(stack.key);
    expect(text).not.toContain(AUDIO.slice(0, 40));
  });

  it('writes as many lines for a session of 400 frames as for one of 4', async () => {
    stack = await startTestRelay({ builtInSimulator: true, settings: { logLevel: 'debug' } });
    const short = await runSession(stack, 4);
    const long = await runSession(stack, 400);
    expect(long.sessionId).toBeDefined();
    expect(long.lines.length).toBe(short.lines.length);
    expect(stack.logs.filter((l) => l.sessionId === long.sessionId)).toHaveLength(2);
  });

  it('follows LOG_LEVEL: at warn a clean session writes nothing', async () => {
    stack = await startTestRelay({ builtInSimulator: true, settings: { logLevel: 'warn' } });
    const { lines } = await runSession(stack, 3);
    expect(lines).toEqual([]);
  });

  it('redacts a key or audio wherever a caller puts one, headers included', () => {
    let written = '';
    const log = createLogger('info', new Writable({ write: (chunk: Buffer, _encoding, done) => ((written += chunk.toString()), done()) }));
    log.info({ key: 'rk_a', upstream: { apiKey: 'sk-b' }, request: { headers: { Authorization: 'Bearer sk-c', 'api-key': 'azure-d' } }, event: { audio: AUDIO, delta: 'e' } }, 'x');
    const line = JSON.parse(written) as Record<string, unknown>;
    expect(line).toMatchObject({ key: '[redacted]', upstream: { apiKey: '[redacted]' }, request: { headers: { Authorization: '[redacted]', 'api-key': '[redacted]' } }, event: { audio: '[redacted]', delta: '[redacted]' } });
    for (const secret of ['rk_a', 'sk-b', 'sk-c', 'azure-d', AUDIO.slice(0, 40)]) expect(written).not.toContain(secret);
  });
});
