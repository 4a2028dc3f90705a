import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { TestClient } from '../helpers/client.js';
import { TEST_KEY } from '../helpers/recording-billing.js';
import { startTestRelay, type RecordingTestRelay } from '../helpers/relay.js';
import { advanceClock, runClockUntil, useFakeClock } from '../helpers/fake-clock.js';
import { eventually } from '../helpers/wait.js';

let stack: RecordingTestRelay | undefined;
// Every timer here runs on the fake clock; sockets stay real (see useFakeClock).
beforeEach(() => useFakeClock());
afterEach(async () => {
  vi.useRealTimers();
  await stack?.close();
  stack = undefined;
});

function quietClient(url: string): TestClient {
  // A client that never answers pings: what a half-open peer looks like.
  return new TestClient(new WebSocket(url, { headers: { Authorization: `Bearer ${TEST_KEY}` }, autoPong: false }));
}

describe('session timers', () => {
  it('closes a session with no client frame for the idle timeout, and not one that keeps talking', async () => {
    stack = await startTestRelay({ billing: 'recording', settings: { idleTimeoutMs: 300 } });
    const talker = stack.connect();
    const idler = stack.connect();
    await runClockUntil(talker.next('session.created'));
    await runClockUntil(idler.next('session.created'));
    // On the fake clock too: the talker speaks every 100 ms of clock time.
    const chatter = setInterval(() => talker.send({ type: 'input_audio_buffer.clear' }), 100);
    try {
      const error = await runClockUntil(idler.next('error', 3_000));
      expect(error.error).toMatchObject({ code: 'idle_timeout' });
      expect((await runClockUntil(idler.closedWith())).code).toBe(1000);
      expect(talker.closed).toBeNull();
    } finally {
      clearInterval(chatter);
    }
    expect((await runClockUntil(talker.closedWith(3_000))).code).toBe(1000);
    await runClockUntil(stack.billing.settled(2));
    expect(stack.billing.settlements.map((s) => s.endReason)).toEqual(['cancelled:idle_timeout', 'cancelled:idle_timeout']);
  });

  it('ends a session at its maximum duration with session_expired and 1001', async () => {
    stack = await startTestRelay({ billing: 'recording', settings: { maxSessionMs: 300 } });
    const client = stack.connect();
    await runClockUntil(client.next('session.created'));
    expect((await runClockUntil(client.next('error', 3_000))).error).toMatchObject({ code: 'session_expired' });
    expect((await runClockUntil(client.closedWith())).code).toBe(1001);
    await runClockUntil(stack.billing.settled(1));
    expect(stack.billing.settlements[0]!.endReason).toBe('cancelled:max_duration');
  });

  it('drops a client that stops answering pings and bills its response', async () => {
    stack = await startTestRelay({ billing: 'recording', settings: { pingIntervalMs: 150 }, simulator: { chunkIntervalMs: 50, audioChunks: 200 } });
    const client = quietClient(stack.url());
    await runClockUntil(client.next('session.created'));
    client.send({ type: 'response.create' });
    await runClockUntil(client.next('response.created'));
    await runClockUntil(client.closedWith(3_000));
    await runClockUntil(stack.billing.settled(1));
    const [summary] = stack.billing.settlements;
    expect(summary!.endReason).toBe('client_closed');
    expect(summary!.clientCloseCode).toBe(1006);
    expect(summary!.drain).toBe('response_done');
    expect(stack.billing.charges).toHaveLength(1);
  });

  it('drops an upstream that stops answering pings and tells the client 1011', async () => {
    stack = await startTestRelay({ billing: 'recording', settings: { pingIntervalMs: 150 } });
    const client = stack.connect();
    await runClockUntil(client.next('session.created'));
    client.send({ type: 'simulator.fault', fault: { kind: 'silence' } });
    expect((await runClockUntil(client.closedWith(3_000))).code).toBe(1011);
    await runClockUntil(stack.billing.settled(1));
    expect(stack.billing.settlements[0]).toMatchObject({ endReason: 'error:upstream_timeout', upstreamCloseCode: 1011 });
  });

  it('keeps a session whose client stops reading for many ping intervals, and delivers the whole response once it reads again', async () => {
    stack = await startTestRelay({
      billing: 'recording',
      settings: { pingIntervalMs: 400, highWaterBytes: 64 * 1024, stallTimeoutMs: 10_000 },
      simulator: { chunkIntervalMs: 0, audioChunkBytes: 24_000, audioChunks: 200 },
    });
    const client = stack.connect();
    await runClockUntil(client.next('session.created'));
    const link = stack.relay.registry.list()[0]!.link;
    // The relay stops reading the upstream while the client takes nothing: neither can answer a ping.
    client.socket.pause();
    client.send({ type: 'response.create' });
    await runClockUntil(eventually('the upstream paused for the client', () => link.stats.pauses > 0));
    // Five ping intervals without a pong from either peer.
    await advanceClock(2_000);
    expect(stack.billing.settlements).toHaveLength(0);
    expect(stack.relay.registry.size).toBe(1);
    client.socket.resume();
    await runClockUntil(client.next('response.done', 10_000));
    expect(client.count('response.output_audio.delta')).toBe(200);
    expect(stack.billing.charges).toHaveLength(1);
    client.close();
    await runClockUntil(stack.billing.settled(1));
    expect(stack.billing.settlements[0]!.endReason).toBe('client_closed');
  });

  it('keeps a session whose upstream stops reading for many ping intervals, and answers the client once it reads again', async () => {
    stack = await startTestRelay({ billing: 'recording', settings: { pingIntervalMs: 400, highWaterBytes: 64 * 1024, stallTimeoutMs: 10_000 } });
    const client = stack.connect();
    await runClockUntil(client.next('session.created'));
    const link = stack.relay.registry.list()[0]!.link;
    stack.sim.strikeAll({ kind: 'slow_reader' });
    // The relay stops reading the client while the upstream takes nothing: neither can answer a ping.
    const audio = JSON.stringify({ type: 'input_audio_buffer.append', audio: 'A'.repeat(32 * 1024) });
    const flooding = setInterval(() => {
      for (let i = 0; i < 20; i++) client.socket.send(audio);
    }, 5);
    try {
      await runClockUntil(eventually('the client paused for the upstream', () => link.stats.pauses > 0));
    } finally {
      clearInterval(flooding);
    }
    // Five ping intervals without a pong from either peer.
    await advanceClock(2_000);
    expect(stack.billing.settlements).toHaveLength(0);
    expect(stack.relay.registry.size).toBe(1);
    stack.sim.strikeAll({ kind: 'resume_reading' });
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await runClockUntil(client.next('response.done', 10_000));
    expect(stack.billing.charges).toHaveLength(1);
    client.close();
    await runClockUntil(stack.billing.settled(1));
    expect(stack.billing.settlements[0]!.endReason).toBe('client_closed');
  });

  it('gives up waiting for the cancelled response after the drain timeout', async () => {
    stack = await startTestRelay({ billing: 'recording', settings: { drainTimeoutMs: 300 } });
    const client = stack.connect();
    await runClockUntil(client.next('session.created'));
    client.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
    client.send({ type: 'response.create' });
    await runClockUntil(client.next('response.created'));
    stack.sim.strikeAll({ kind: 'silence' });
    client.close();
    await runClockUntil(stack.billing.settled(1));
    expect(stack.billing.settlements[0]).toMatchObject({ endReason: 'client_closed', drain: 'timeout' });
    await runClockUntil(stack.relay.registry.empty());
  });

  it('cancels a session whose client stopped reading once it has stalled too long', async () => {
    stack = await startTestRelay({
      billing: 'recording',
      settings: { highWaterBytes: 64 * 1024, stallTimeoutMs: 300, closeTimeoutMs: 300 },
      simulator: { chunkIntervalMs: 0, audioChunkBytes: 48_000, audioChunks: 400 },
    });
    const client = stack.connect();
    await runClockUntil(client.next('session.created'));
    client.socket.pause();
    client.send({ type: 'response.create' });
    await runClockUntil(stack.billing.settled(1, 10_000));
    expect(stack.billing.settlements[0]!.endReason).toBe('cancelled:backpressure_stall');
    client.socket.resume();
    expect((await runClockUntil(client.closedWith(5_000))).code).not.toBe(1000);
  });

  it('pauses and resumes a slow client without losing or reordering a frame', async () => {
    stack = await startTestRelay({
      billing: 'recording',
      settings: { highWaterBytes: 64 * 1024, stallTimeoutMs: 10_000 },
      simulator: { chunkIntervalMs: 0, audioChunkBytes: 24_000, audioChunks: 200 },
    });
    const client = stack.connect();
    await runClockUntil(client.next('session.created'));
    client.socket.pause();
    client.send({ type: 'response.create' });
    // Reading nothing, the client makes the relay pause the upstream (frames, not time, decide when).
    await runClockUntil(eventually('the upstream paused for the client', () => stack!.relay.registry.list()[0]!.link.stats.pauses > 0));
    client.socket.resume();
    await runClockUntil(client.next('response.done', 10_000));
    expect(client.count('response.output_audio.delta')).toBe(200);
    const deltas = client.events.filter((e) => e.type === 'response.output_audio.delta');
    expect(new Set(deltas.map((d) => d.item_id)).size).toBe(1);
    const sequence = client.events.map((e) => e.type);
    expect(sequence.indexOf('response.done')).toBe(sequence.lastIndexOf('response.done'));
    expect(sequence.lastIndexOf('response.output_audio.delta')).toBeLessThan(sequence.indexOf('response.done'));
    const live = stack.relay.registry.list()[0]!.link;
    expect(live.stats.pauses).toBeGreaterThan(0);
    client.close();
    await runClockUntil(stack.billing.settled(1));
  });
});
