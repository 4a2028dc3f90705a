import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { word } from '../../src/simulator/shapes.js';
import { SUPPORTED_EVENTS } from '../../src/simulator/index.js';
import { TEST_KEY } from '../helpers/recording-billing.js';
import { startTestRelay, type RecordingTestRelay } from '../helpers/relay.js';
import { clientFrame, OPCODE, rawConnect, type RawConnection } from './raw-socket.js';

const MAX_PAYLOAD = 64 * 1024;
const TEXT_DELTAS = 60;

let stack: RecordingTestRelay;
let port: number;

beforeAll(async () => {
  stack = await startTestRelay({ billing: 'recording', settings: { maxPayloadBytes: MAX_PAYLOAD }, simulator: { chunkIntervalMs: 1, textDeltas: TEXT_DELTAS } });
  port = Number(new URL(stack.relay.url()).port);
});
afterAll(async () => {
  await stack.close();
});

async function openSession(): Promise<RawConnection> {
  const connection = await rawConnect(port, '/v1/realtime?model=gpt-realtime', { Authorization: `Bearer ${TEST_KEY}` });
  expect(connection.status).toBe(101);
  await connection.until(() => connection.events().some((e) => e.type === 'session.created'), 'session.created');
  return connection;
}

let sentinels = 0;
/** Proves the session is alive and every earlier frame went through: the upstream echoes this item after them. */
async function expectAlive(connection: RawConnection): Promise<void> {
  const id = `item_sentinel_${++sentinels}`;
  connection.send(OPCODE.text, JSON.stringify({ type: 'conversation.item.create', item: { id, type: 'message', role: 'user', content: [{ type: 'input_text', text: 'still there?' }] } }));
  await connection.until(() => connection.events().some((e) => e.type === 'conversation.item.added' && (e.item as { id?: string }).id === id), `the sentinel ${id}`, 15_000);
  expect(connection.isEnded).toBe(false);
}

/** Ends with `code`; `errorCode` is the `error` event the relay sent before closing, when it could. */
async function expectEnded(connection: RawConnection, code: number, errorCode?: string): Promise<void> {
  await connection.until(() => connection.closeCode() !== null || connection.isEnded, 'a close', 10_000);
  expect(connection.closeCode()).toBe(code);
  if (errorCode) expect(connection.events().filter((e) => e.type === 'error').map((e) => (e.error as { code: string }).code)).toContain(errorCode);
  connection.socket.destroy();
}

/**
 * Runs `body` beside a session that streams responses the whole time and
 * checks that it received every delta of every response, in order.
 */
async function besideAStreamingSession(body: () => Promise<void>): Promise<void> {
  const neighbour = stack.connect();
  await neighbour.next('session.created');
  let stop = false;
  let responses = 0;
  const streaming = (async () => {
    while (!stop) {
      const from = neighbour.events.length;
      neighbour.send({ type: 'response.create', response: { output_modalities: ['text'] } });
      await neighbour.next('response.done', 15_000, from);
      const deltas = neighbour.events.slice(from).filter((e) => e.type === 'response.output_text.delta');
      expect(deltas.map((e) => e.delta)).toEqual(Array.from({ length: TEXT_DELTAS }, (_, i) => word(i)));
      responses++;
    }
  })();
  try {
    await body();
  } finally {
    stop = true;
    await streaming;
  }
  expect(responses).toBeGreaterThan(0);
  expect(neighbour.closed).toBeNull();
  neighbour.close();
  await neighbour.closedWith();
}

describe('hostile frames from a client', () => {
  it('ends only the offending session, with a clear error, for each frame of the fixed corpus', async () => {
    const fatal: Array<{ name: string; opcode: number; payload: Buffer; code: number; error?: string }> = [
      { name: 'not JSON', opcode: OPCODE.text, payload: Buffer.from('hello relay'), code: 1007, error: 'invalid_frame' },
      { name: 'a JSON array', opcode: OPCODE.text, payload: Buffer.from('[{"type":"response.create"}]'), code: 1007, error: 'invalid_frame' },
      { name: 'a JSON string', opcode: OPCODE.text, payload: Buffer.from('"response.create"'), code: 1007, error: 'invalid_frame' },
      { name: 'null', opcode: OPCODE.text, payload: Buffer.from('null'), code: 1007, error: 'invalid_frame' },
      { name: 'a number type', opcode: OPCODE.text, payload: Buffer.from('{"type":5}'), code: 1007, error: 'invalid_frame' },
      { name: 'an object type', opcode: OPCODE.text, payload: Buffer.from('{"type":{"is":"response.create"}}'), code: 1007, error: 'invalid_frame' },
      { name: 'no type', opcode: OPCODE.text, payload: Buffer.from('{"event_id":"e1","response":{}}'), code: 1007, error: 'invalid_frame' },
      { name: 'an empty frame', opcode: OPCODE.text, payload: Buffer.alloc(0), code: 1007, error: 'invalid_frame' },
      { name: 'a binary frame', opcode: OPCODE.binary, payload: Buffer.from('{"type":"response.create"}'), code: 1007, error: 'invalid_frame' },
      { name: 'invalid UTF-8', opcode: OPCODE.text, payload: Buffer.from([0x7b, 0x22, 0x74, 0xff, 0xfe, 0x22, 0x7d]), code: 1007 },
      { name: 'a frame over maxPayload', opcode: OPCODE.text, payload: Buffer.from(`{"type":"input_audio_buffer.append","audio":"${'A'.repeat(MAX_PAYLOAD)}"}`), code: 1009 },
      { name: 'a reserved opcode', opcode: 0x3, payload: Buffer.from('{}'), code: 1002 },
      { name: 'a ping over 125 bytes', opcode: OPCODE.ping, payload: Buffer.alloc(200, 1), code: 1002 },
      // Frames parsers read differently: the relay refuses them rather than guess which type the upstream takes.
      { name: 'a type first, then broken JSON', opcode: OPCODE.text, payload: Buffer.from('{"type":"conversation.item.create","item":{'), code: 1007, error: 'invalid_frame' },
      { name: 'a duplicate type key', opcode: OPCODE.text, payload: Buffer.from('{"type":"input_audio_buffer.clear","type":7}'), code: 1007, error: 'invalid_frame' },
      { name: 'a second type after the audio', opcode: OPCODE.text, payload: Buffer.from('{"type":"input_audio_buffer.append","audio":"AAAA","type":"input_audio_buffer.clear"}'), code: 1007, error: 'invalid_frame' },
      { name: 'a type key in another letter case', opcode: OPCODE.text, payload: Buffer.from('{"type":"input_audio_buffer.clear","TYPE":"input_audio_buffer.clear"}'), code: 1007, error: 'invalid_frame' },
      { name: 'a second object after the first', opcode: OPCODE.text, payload: Buffer.from('{"type":"input_audio_buffer.clear"}{"type":"input_audio_buffer.clear"}'), code: 1007, error: 'invalid_frame' },
    ];
    const survivable: Array<{ name: string; payload: string }> = [
      { name: 'an unknown event type', payload: '{"type":"relay.please_crash"}' },
      { name: 'wrong field types', payload: '{"type":"session.update","session":"not an object","event_id":42}' },
      { name: 'a huge string under the cap', payload: JSON.stringify({ type: 'session.update', session: { instructions: 'x'.repeat(MAX_PAYLOAD - 100) } }) },
      { name: 'deep nesting', payload: `{"type":"conversation.item.create","item":${'['.repeat(20_000)}${']'.repeat(20_000)}}` },
      { name: 'deep nesting before the type', payload: `{"a":${'{"b":'.repeat(5_000)}1${'}'.repeat(5_000)},"type":"input_audio_buffer.clear"}` },
      { name: 'escapes and unicode in the type', payload: '{"type":"conversation.item.\\u0063reate\\"\\\\ \u{1F600}"}' },
      { name: 'the type key spelled with an escape', payload: '{"typ\\u0065":"input_audio_buffer.clear","Types":1}' },
    ];
    await besideAStreamingSession(async () => {
      for (const frame of fatal) {
        const connection = await openSession();
        connection.send(frame.opcode, frame.payload);
        await expectEnded(connection, frame.code, frame.error).catch((error: Error) => {
          throw new Error(`${frame.name}: ${error.message}`);
        });
      }
      for (const frame of survivable) {
        const connection = await openSession();
        connection.send(OPCODE.text, frame.payload);
        await expectAlive(connection).catch((error: Error) => {
          throw new Error(`${frame.name}: ${error.message}`);
        });
        connection.socket.destroy();
      }
      // An unmasked client frame is a protocol error.
      const unmasked = await openSession();
      unmasked.write(Buffer.concat([Buffer.from([0x81, 2]), Buffer.from('{}')]));
      await expectEnded(unmasked, 1002);
    });
    await stack.relay.registry.empty();
    expect(stack.billing.settlements.length).toBe(stack.billing.opened.length);
  });

  it('relays a flood of small frames in order, and closes a flood sent before the upstream answered', async () => {
    await besideAStreamingSession(async () => {
      const connection = await openSession();
      const frame = Buffer.from('{"type":"input_audio_buffer.append","audio":"AAAA"}');
      connection.write(Buffer.concat(Array.from({ length: 20_000 }, () => clientFrame(OPCODE.text, frame))));
      await expectAlive(connection);
      connection.socket.destroy();

      // Before session.created the frames wait for the upstream, within a bound.
      const early = await rawConnect(port, '/v1/realtime?model=gpt-realtime', { Authorization: `Bearer ${TEST_KEY}` });
      early.write(Buffer.concat(Array.from({ length: 2_000 }, () => clientFrame(OPCODE.text, frame))));
      await early.until(() => early.isEnded || early.closeCode() !== null || early.events().some((e) => e.type === 'session.created'), 'an outcome');
      if (early.closeCode() !== null) expect(early.closeCode()).toBe(1008);
      early.socket.destroy();
    });
  });

  it('survives 10,000 generated frames, ending exactly the sessions that sent an unreadable one', async () => {
    // Every client event the upstream answers, except the one that starts (billable) responses.
    const SAFE_TYPES = SUPPORTED_EVENTS.filter((type) => type !== 'response.create');
    // A type holding U+0000 is refused (C-string parsers would read less of it).
    const eventType = fc
      .oneof(fc.constantFrom(...SAFE_TYPES), fc.string({ unit: 'binary', maxLength: 40 }))
      .filter((t) => t !== 'simulator.fault' && t !== 'response.create' && !t.includes('\u0000'));
    // Keys that read as `type` in another letter case are refused; any other key is the upstream's to judge.
    const otherKeys = fc.dictionary(fc.string({ unit: 'binary', maxLength: 12 }).filter((k) => !/^type(\u0000|$)/i.test(k)), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 });
    /** Frames the relay must forward: one readable type, anything else in any shape. */
    const forwarded = fc.oneof(
      { weight: 4, arbitrary: fc.tuple(eventType, otherKeys).map(([type, rest]) => ({ text: JSON.stringify({ ...rest, type }) })) },
      // The type anywhere among the keys, spaced out, its value spelled with escapes.
      {
        weight: 1,
        arbitrary: fc.tuple(eventType, otherKeys, fc.nat(5), fc.constantFrom(' ', '\n', '\t ')).map(([type, rest, position, space]) => {
          const entries = Object.entries(rest).map(([k, v]) => `${JSON.stringify(k)}${space}:${space}${JSON.stringify(v)}`);
          const escaped = [...type].map((c) => (c.length === 1 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c)).join('');
          entries.splice(Math.min(position, entries.length), 0, `"type"${space}:${space}"${escaped}"`);
          return { text: `{${space}${entries.join(`,${space}`)}${space}}` };
        }),
      },
    );
    /** Frames that end the session that sent them. */
    const unreadable = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)).map((v) => ({ opcode: OPCODE.text, payload: Buffer.from(JSON.stringify(v)), code: 1007 })),
      fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== 'type'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }).map((v) => ({ opcode: OPCODE.text, payload: Buffer.from(JSON.stringify(v)), code: 1007 })),
      fc.uint8Array({ maxLength: 200 }).map((bytes) => ({ opcode: OPCODE.binary, payload: Buffer.from(bytes), code: 1007 })),
      fc.string({ maxLength: 50 }).map((s) => ({ opcode: OPCODE.text, payload: Buffer.concat([Buffer.from(`{"type":"${s.replace(/["\\]/g, '')}`), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), code: 1007 })),
      fc.constant({ opcode: OPCODE.text, payload: Buffer.alloc(MAX_PAYLOAD + 1, 0x20), code: 1009 }),
      fc.tuple(eventType, eventType).map(([first, second]) => ({ opcode: OPCODE.text, payload: Buffer.from(`{"type":${JSON.stringify(first)},"type":${JSON.stringify(second)}}`), code: 1007 })),
    );
    let frames = 0;
    let sessions = 0;
    let ended = 0;
    await besideAStreamingSession(async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(forwarded, { minLength: 200, maxLength: 300 }), fc.option(unreadable, { freq: 3 }), async (batch, last) => {
          const connection = await openSession();
          sessions++;
          try {
            connection.write(Buffer.concat(batch.map((f) => clientFrame(OPCODE.text, Buffer.from(f.text)))));
            frames += batch.length;
            if (last === null) {
              await expectAlive(connection);
              return;
            }
            connection.send(last.opcode, last.payload);
            frames++;
            ended++;
            await expectEnded(connection, last.code);
          } finally {
            connection.socket.destroy();
          }
        }),
        { numRuns: 45 },
      );
    });
    console.log(`generated frames: ${frames} over ${sessions} sessions (${ended} ended by an unreadable frame)`);
    expect(frames).toBeGreaterThanOrEqual(10_000);
    await stack.relay.registry.empty();
    const health = await fetch(`${stack.relay.url().replace(/^ws/, 'http')}/healthz`);
    expect(health.status).toBe(200);
  }, 120_000);
});
