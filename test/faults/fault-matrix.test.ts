import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TestClient } from '../helpers/client.js';
import { TEST_KEY } from '../helpers/recording-billing.js';
import { startTestRelay, type RecordingTestRelay } from '../helpers/relay.js';
import { eventually } from '../helpers/wait.js';
import { FAULT_MATRIX, PHASES, type FaultName, type Outcome, type Phase } from './fault-matrix.js';

/**
 * The fault matrix on real sockets: each cell sets a session up in its phase,
 * strikes the fault, lets the session end (or ends it the documented way),
 * and checks what the client saw, the one settlement, and that nothing of the
 * session is left open.
 */

let stack: RecordingTestRelay | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

/*
 * On real time, not the fake clock: each cell checks that the session left no
 * timer armed, and only real timers show in process.getActiveResourcesInfo().
 */
const count = (kind: string) => process.getActiveResourcesInfo().filter((r) => r === kind).length;

/** A masked text frame written straight onto the socket, bypassing the client library's own checks. */
function rawTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
}

async function runCell(fault: FaultName, phase: Phase, expected: Outcome): Promise<void> {
  const before = { sockets: count('TCPSocketWrap'), timers: count('Timeout') };
  const stopsReading = fault === 'client stops reading';
  stack = await startTestRelay({
    billing: 'recording',
    // A client that stops reading is sent a long audio response, streamed faster than it could take it.
    simulator: stopsReading ? { chunkIntervalMs: 1, audioChunkBytes: 48_000, audioChunks: 1_000 } : { chunkIntervalMs: 5 },
    settings: {
      connectTimeoutMs: 400,
      pingIntervalMs: fault === 'upstream goes silent' || fault === 'client ignores pings' ? 200 : 15_000,
      drainTimeoutMs: fault === 'upstream goes silent' || fault === 'upstream stops reading' ? 400 : 10_000,
      // Long enough for the client to read what it was owed, its error event and the close frame once it resumes.
      closeTimeoutMs: stopsReading ? 5_000 : 500,
      highWaterBytes: 64 * 1024,
      stallTimeoutMs: 400,
    },
  });
  const s = stack;
  const handshakeFaults: Partial<Record<FaultName, Parameters<RecordingTestRelay['sim']['queueHandshakeFault']>[0]>> = {
    'upstream refuses 401': { kind: 'refuse', status: 401 },
    'upstream refuses 429': { kind: 'refuse', status: 429 },
    'upstream refuses 503': { kind: 'refuse', status: 503 },
    'handshake hangs': { kind: 'hang' },
    'upstream silent after upgrade': { kind: 'silence' },
    'upstream closes after upgrade': { kind: 'close_on_open' },
  };
  const handshakeFault = handshakeFaults[fault];
  if (handshakeFault) s.sim.queueHandshakeFault(handshakeFault);
  else if (phase === 'connecting') s.sim.queueHandshakeFault({ kind: 'hold' });

  const client =
    fault === 'client ignores pings'
      ? new TestClient(new WebSocket(s.url(), { headers: { Authorization: `Bearer ${TEST_KEY}` }, autoPong: false }))
      : s.connect();
  await eventually('the session to start', () => s.relay.registry.size > 0 || client.closed !== null);
  const live = () => s.relay.registry.list()[0];
  const link = () => live()?.link;

  // Bring the session into its phase.
  if (phase !== 'connecting') {
    await client.next('session.created');
    if (phase === 'response in flight' || phase === 'draining') {
      client.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
      client.send({ type: 'response.create', response: { output_modalities: [stopsReading ? 'audio' : 'text'] } });
      await client.next('response.created');
    }
    if (phase === 'draining') {
      s.relay.registry.cancel(link()!.sessionId, 'shutdown');
      await eventually('draining', () => live()?.actor.getSnapshot().value === 'draining');
    }
  } else if (!handshakeFault) {
    await eventually('the held dial', () => s.sim.handshakes.length > 0);
  }

  // Strike.
  let flooding: NodeJS.Timeout | undefined;
  switch (fault) {
    case 'garbage frame':
      s.sim.strikeAll({ kind: 'garbage' });
      await client.until(() => client.events.some((e) => e.type === '<unparseable>'), 'the garbage frame');
      expect(client.events.find((e) => e.type === '<unparseable>')!.text).toBe('simulator: this frame is not JSON');
      break;
    case 'upstream goes silent':
      s.sim.strikeAll({ kind: 'silence' });
      break;
    case 'TCP drop':
      s.sim.strikeAll({ kind: 'drop' });
      break;
    case 'upstream closes 4001':
      s.sim.strikeAll({ kind: 'close', code: 4001, reason: 'upstream closed' });
      break;
    case 'session_expired + 1001':
      s.sim.strikeAll({ kind: 'session_expired' });
      break;
    case 'upstream stops reading': {
      s.sim.strikeAll({ kind: 'slow_reader' });
      const audio = JSON.stringify({ type: 'input_audio_buffer.append', audio: 'A'.repeat(32 * 1024) });
      let sent = 0;
      flooding = setInterval(() => {
        if (client.closed || client.socket.readyState !== WebSocket.OPEN || sent > 4_000) return;
        for (let i = 0; i < 20; i++) client.socket.send(audio);
        sent += 20;
      }, 5);
      break;
    }
    case 'client stops reading':
      client.socket.pause();
      s.sim.strikeAll({ kind: 'finish_response' });
      break;
    case 'client vanishes':
      client.socket.terminate();
      if (phase === 'connecting') s.sim.releaseHeld();
      break;
    case 'client ignores pings':
      break;
    case 'client sends after close':
      client.socket.close(1000);
      client.tcp!.write(rawTextFrame('{"type":"response.create"}'));
      break;
    default:
      break;
  }

  try {
    // Let the session end, or end it the way the cell documents.
    if ((fault === 'garbage frame') && phase !== 'draining') client.close(1000);
    if ((fault === 'garbage frame' || fault === 'client vanishes' || fault === 'TCP drop' || fault === 'upstream closes 4001') && phase === 'draining') {
      s.sim.strikeAll({ kind: 'finish_response' });
    }
    await s.billing.settled(1, 10_000);
  } finally {
    clearInterval(flooding);
  }

  const [settlement] = s.billing.settlements;
  expect(s.billing.settlements).toHaveLength(1);
  expect(settlement!.endReason).toBe(expected.endReason);
  if (stopsReading) {
    // Whatever the client failed to take, its response was read to the end and charged.
    expect(s.billing.charges).toHaveLength(1);
    client.socket.resume();
  }
  if (expected.clientClose !== null) {
    expect((await client.closedWith(5_000)).code).toBe(expected.clientClose);
  }
  if (expected.errorEvent) {
    const codes = client.events.filter((e) => e.type === 'error').map((e) => (e.error as { code?: string }).code);
    expect(codes).toContain(expected.errorEvent);
  }
  await s.relay.registry.empty();
  await s.close();
  stack = undefined;
  expect(count('TCPSocketWrap'), 'sockets left open').toBeLessThanOrEqual(before.sockets);
  expect(count('Timeout'), 'timers left running').toBeLessThanOrEqual(before.timers);
}

describe('the fault matrix', () => {
  for (const row of FAULT_MATRIX) {
    for (const phase of PHASES) {
      const expected = row.cells[phase];
      if (!expected) continue;
      it(`${row.fault} (${row.side}) while ${phase}: ${expected.clientClose ?? 'client gone'}, ${expected.endReason}`, async () => {
        await runCell(row.fault, phase, expected);
      });
    }
  }
});
