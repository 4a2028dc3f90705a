import { afterEach, describe, expect, it } from 'vitest';
import { priceUsage } from '../../src/billing/cost.js';
import { resolveModel, type RealtimePrice } from '../../src/billing/prices.js';
import { normalizeResponseUsage } from '../../src/billing/usage.js';
import { SETTINGS, type Settings } from '../../src/config/settings.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { OPCODE, rawConnect, type RawConnection } from '../hardening/raw-socket.js';

/**
 * A client asks for a long audio response and stops reading its socket. The
 * relay must still read the upstream to the response's `response.done` and
 * charge it: a client that cannot take more loses frames, never the charge.
 */

let stack: LedgerTestRelay | undefined;
let client: RawConnection | undefined;
/*
 * On real time, not the fake clock: once the client reads again it must take
 * megabytes of backlog and the close frame before the relay's close timeout
 * ends the socket. That race is between a timer and the kernel's socket
 * throughput; a fake clock moved in steps runs ahead of the sockets and the
 * close timeout wins.
 */
afterEach(async () => {
  client?.socket.destroy();
  client = undefined;
  await stack?.close();
  stack = undefined;
});

interface Upstream {
  /** What the simulator reported in its `response.done`. */
  reportedUsage: unknown[];
  /** Event types the relay sent the simulator. */
  received: string[];
}

async function startWithLongAudio(timings: Partial<Settings>): Promise<{ stack: LedgerTestRelay; upstream: Upstream }> {
  const upstream: Upstream = { reportedUsage: [], received: [] };
  const started = await startTestRelay({
    settings: { highWaterBytes: 64 * 1024, ...timings },
    simulator: {
      // A long response streamed faster than any client reads it: 48 kB of PCM16 (1 s of audio) a millisecond.
      audioChunkBytes: 48_000,
      audioChunks: 5_000,
      chunkIntervalMs: 1,
      tap: {
        received(frame) {
          const head = frame.subarray(0, 64).toString();
          const type = /"type":"([^"]+)"/.exec(head)?.[1];
          if (type) upstream.received.push(type);
        },
        serialize(event) {
          if (event.type === 'response.done') upstream.reportedUsage.push((event.response as { usage: unknown }).usage);
          return JSON.stringify(event);
        },
      },
    },
  });
  return { stack: started, upstream };
}

async function attack(s: LedgerTestRelay, key: string): Promise<RawConnection> {
  const port = Number(new URL(s.relay.url()).port);
  const connection = await rawConnect(port, '/v1/realtime?model=gpt-realtime', { Authorization: `Bearer ${key}` }, { answerPings: true });
  await connection.until(() => connection.events().some((e) => e.type === 'session.created'), 'session.created');
  connection.send(OPCODE.text, JSON.stringify({ type: 'response.create', response: { output_modalities: ['audio'] } }));
  // The client stops reading: nothing it is sent is taken any more, pings included.
  connection.socket.pause();
  return connection;
}

async function expectBilledStall(s: LedgerTestRelay, upstream: Upstream, keyId: string, connection: RawConnection): Promise<void> {
  await expect.poll(async () => (await s.view.book(keyId)).settlements.length, { timeout: 15_000, interval: 50 }).toBe(1);
  const book = await s.view.book(keyId);
  expect(book.settlements[0]!.endReason).toBe('cancelled:backpressure_stall');
  expect(upstream.received).toContain('response.cancel');
  expect(upstream.reportedUsage).toHaveLength(1);
  const price = resolveModel('gpt-realtime') as RealtimePrice;
  const cost = priceUsage(normalizeResponseUsage(upstream.reportedUsage[0]), price);
  expect(cost).toBeGreaterThan(0n);
  expect(book.charges).toHaveLength(1);
  expect(book.charges[0]!.usage).toEqual(upstream.reportedUsage[0]);
  expect(book.charges[0]!.costNano).toBe(cost);
  expect(book.settlements[0]!.totalNano).toBe(cost);

  // Once it reads again, the client is told why it lost the rest of the response.
  connection.socket.resume();
  await connection.until(() => connection.closeCode() !== null || connection.isEnded, 'the close frame', 10_000);
  expect(connection.closeCode()).toBe(1011);
  const errors = connection.frames
    .filter((f) => f.opcode === OPCODE.text && f.payload.length < 4096)
    .map((f) => JSON.parse(f.payload.toString()) as { type: string; error?: { code: string } })
    .filter((e) => e.type === 'error');
  expect(errors.map((e) => e.error?.code)).toContain('backpressure_stall');
  expect(connection.events().some((e) => e.type === 'response.done')).toBe(false);
  connection.socket.destroy();
  await s.idle();
  expect((await s.view.book(keyId)).settlements).toHaveLength(1);
}

describe('a client that stops reading mid-response', () => {
  it('is cut off by default before a ping interval has passed', () => {
    expect(SETTINGS.stallTimeoutMs.default).toBeLessThan(SETTINGS.pingIntervalMs.default);
  });

  it('is cut off with backpressure_stall, and its response is cancelled upstream and billed in full (stall timeout below the ping interval, as by default)', async () => {
    const started = await startWithLongAudio({ stallTimeoutMs: 400, pingIntervalMs: 1_000 });
    stack = started.stack;
    const { key, record } = await stack.createKey();
    client = await attack(stack, key);
    await expectBilledStall(stack, started.upstream, record.id, client);
  });

  it('is cut off with backpressure_stall and billed even when pings come more often than the stall timeout', async () => {
    const started = await startWithLongAudio({ stallTimeoutMs: 900, pingIntervalMs: 300 });
    stack = started.stack;
    const { key, record } = await stack.createKey();
    client = await attack(stack, key);
    await expectBilledStall(stack, started.upstream, record.id, client);
  });
});
