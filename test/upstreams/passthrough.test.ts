import { afterEach, describe, expect, it } from 'vitest';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { startScriptedUpstream, type ScriptedUpstream } from './scripted-upstream.js';

let stack: LedgerTestRelay | undefined;
let upstream: ScriptedUpstream | undefined;
afterEach(async () => {
  await stack?.close();
  await upstream?.close();
  stack = upstream = undefined;
});

/** Spacing, key order, escapes and non-ASCII as no serialiser would write them: any re-encoding shows. */
const CLIENT_NOVELTY = '{ "type" : "client.novelty.ping",  "event_id":"evt_c1", "payload": {"z":1, "a":[true, null, "é\\u00e9\\n"]} }';
const UPSTREAM_NOVELTY = '{"type":"server.novelty.announcement" , "event_id":"evt_u1","nested":{ "b": 2.50, "a": "ünïcode \\"quoted\\"" } ,"list":[ ]}';

describe('event types the relay does not know', () => {
  it('passes a made-up client event to the upstream, and the upstream\'s verdict back', async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    const client = stack.connect();
    await client.next('session.created');
    client.send({ type: 'conversation.item.summarize', event_id: 'evt_client_7' });
    const error = await client.next('error');
    expect(error.error).toMatchObject({ code: 'invalid_value', param: 'type', event_id: 'evt_client_7' });
    expect((error.error as { message: string }).message).toContain("'conversation.item.summarize'");
    // The session goes on.
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await client.next('response.done');
    client.close();
    await stack.idle();
  });

  it.each([
    ['a GA client', {}],
    ['a beta client', { 'OpenAI-Beta': 'realtime=v1' }],
  ])('relays unknown types byte for byte both ways for %s', async (_who, headers) => {
    upstream = await startScriptedUpstream((socket) => {
      socket.send(JSON.stringify({ type: 'session.created', event_id: 'evt_u0', session: { type: 'realtime', object: 'realtime.session', id: 'sess_scripted', model: 'gpt-realtime' } }));
      socket.on('message', (data: Buffer) => {
        if (data.toString().includes('client.novelty.ping')) socket.send(UPSTREAM_NOVELTY);
      });
    });
    stack = await startTestRelay({ upstreams: { upstreams: [{ name: 'scripted', baseUrl: upstream.baseUrl, apiKey: 'sk-scripted' }] } });
    const client = stack.connect({ headers });
    await client.next('session.created');
    client.socket.send(CLIENT_NOVELTY);
    await client.next('server.novelty.announcement');
    await upstream.receivedCount(1);
    expect(upstream.received).toEqual([CLIENT_NOVELTY]);
    expect(client.raw.at(-1)!.toString('utf8')).toBe(UPSTREAM_NOVELTY);
    expect(upstream.handshakes[0]!.headers['openai-beta']).toBeUndefined();
    client.close();
    await stack.idle();
  });
});
