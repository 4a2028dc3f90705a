import { afterEach, describe, expect, it } from 'vitest';
import { TestClient } from '../helpers/client.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

/*
 * Clients written for the retired beta interface (`OpenAI-Beta: realtime=v1`
 * or the browser subprotocol `openai-beta.realtime-v1`) against a GA
 * upstream. The simulator answers a forwarded beta header as OpenAI does,
 * with `beta_api_shape_disabled` and close 4000, so a working session also
 * proves the relay never forwarded it.
 */

let stack: LedgerTestRelay | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

const BETA_HEADER = { 'OpenAI-Beta': 'realtime=v1' };

/** A short conversation, spoken in either dialect; returns the client after its last response.done. */
async function converse(client: TestClient, dialect: 'ga' | 'beta'): Promise<void> {
  await client.next('session.created');
  const text = dialect === 'beta' ? { modalities: ['text'] } : { output_modalities: ['text'] };
  const audio = dialect === 'beta' ? { modalities: ['audio', 'text'] } : { output_modalities: ['audio'] };
  client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hi there' }] } });
  client.send({ type: 'response.create', response: text });
  await client.until(() => client.count('response.done') === 1, 'the first response.done');
  client.send({ type: 'response.create', response: audio });
  await client.until(() => client.count('response.done') === 2, 'the second response.done');
}

describe('a beta client against a GA upstream', () => {
  it('speaks beta end to end and the beta header never reaches the upstream', async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    const client = TestClient.connect(stack.realtimeUrl(), { key: stack.key, headers: BETA_HEADER });

    const created = await client.next('session.created');
    // Beta audio sessions always included text.
    expect(created.session).toMatchObject({ modalities: ['text', 'audio'], voice: 'alloy', input_audio_format: 'pcm16', output_audio_format: 'pcm16' });
    expect(created.session).not.toHaveProperty('audio');
    expect(created.session).not.toHaveProperty('type');

    client.send({ type: 'session.update', session: { modalities: ['text'], voice: 'verse', instructions: 'Be brief.', temperature: 0.7, max_response_output_tokens: 200 } });
    const updated = await client.next('session.updated');
    expect(updated.session).toMatchObject({ modalities: ['text'], voice: 'verse', instructions: 'Be brief.', max_response_output_tokens: 200 });
    expect(updated.session).not.toHaveProperty('output_modalities');

    client.send({ type: 'conversation.item.create', item: { id: 'item_user_1', type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello' }] } });
    const added = await client.next('conversation.item.created');
    expect(added.item).toMatchObject({ id: 'item_user_1', role: 'user' });

    client.send({ type: 'response.create', response: { modalities: ['text'] } });
    await client.until(() => client.count('response.done') === 1, 'the text response');
    client.send({ type: 'response.create', response: { modalities: ['audio', 'text'] } });
    await client.until(() => client.count('response.done') === 2, 'the audio response');

    const types = client.events.map((e) => e.type);
    expect(types).toContain('response.text.delta');
    expect(types).toContain('response.text.done');
    expect(types).toContain('response.audio.delta');
    expect(types).toContain('response.audio_transcript.delta');
    expect(types).toContain('response.audio.done');
    // No GA names and no GA-only events reach a beta client.
    expect(types.filter((t) => /^response\.output_(text|audio|audio_transcript)\./.test(t))).toEqual([]);
    expect(types).not.toContain('conversation.item.added');
    expect(types).not.toContain('conversation.item.done');
    expect(types).not.toContain('error');
    const done = client.events.filter((e) => e.type === 'response.done').at(-1)!;
    expect(done.response).toMatchObject({ modalities: ['text', 'audio'], status: 'completed' });

    client.close();
    expect((await client.closedWith()).code).toBe(1000);
    await stack.idle();
    expect(stack.sim!.handshakes).toHaveLength(1);
    expect(stack.sim!.handshakes[0]!.headers).not.toHaveProperty('openai-beta');
    expect(stack.settlements()[0]).toMatchObject({ chargeCount: 2, endReason: 'client_closed' });
  });

  it('serves a browser offering the beta subprotocol, without passing it on', async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    const client = TestClient.connect(stack.realtimeUrl(), { protocols: ['realtime', `openai-insecure-api-key.${stack.key}`, 'openai-beta.realtime-v1'] });
    const created = await client.next('session.created');
    expect(client.socket.protocol).toBe('realtime');
    expect(created.session).toHaveProperty('modalities');
    client.send({ type: 'response.create', response: { modalities: ['text'] } });
    await client.next('response.done');
    expect(client.count('response.text.delta')).toBeGreaterThan(0);
    client.close();
    await stack.idle();
    const upstreamHeaders = stack.sim!.handshakes[0]!.headers;
    expect(upstreamHeaders['sec-websocket-protocol']).toBeUndefined();
    expect(upstreamHeaders).not.toHaveProperty('openai-beta');
  });

  it('bills a beta session exactly as the same GA session', async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    const ga = stack.connect();
    await converse(ga, 'ga');
    ga.close();
    await stack.idle();
    const beta = TestClient.connect(stack.realtimeUrl(), { key: stack.key, headers: BETA_HEADER });
    await converse(beta, 'beta');
    beta.close();
    await stack.idle();

    const [gaSession, betaSession] = stack.settlements();
    const charges = await stack.ledger.usage({ key: 'demo' });
    const costs = (sessionId: string) => charges.filter((c) => c.sessionId === sessionId).map((c) => ({ model: c.model, costNano: c.costNano, usage: c.usage }));
    expect(costs(gaSession!.sessionId)).toHaveLength(2);
    expect(costs(betaSession!.sessionId)).toEqual(costs(gaSession!.sessionId));
    expect(betaSession!.totalNano).toBe(gaSession!.totalNano);
  });
});
