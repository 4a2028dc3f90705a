import { afterEach, describe, expect, it } from 'vitest';
import { TestClient } from '../helpers/client.js';
import { TEST_KEY } from '../helpers/recording-billing.js';
import { startTestRelay, type RecordingTestRelay } from '../helpers/relay.js';
import { eventually } from '../helpers/wait.js';

let stack: RecordingTestRelay;
afterEach(async () => {
  await stack?.close();
});

describe('relaying a session', () => {
  it('relays a text response both ways in order and settles once', async () => {
    stack = await startTestRelay({ billing: 'recording', simulator: { chunkIntervalMs: 1 } });
    const client = stack.connect();
    await client.next('session.created');
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await client.next('response.done');
    const types = client.events.map((e) => e.type);
    expect(types.indexOf('response.created')).toBeLessThan(types.indexOf('response.output_text.delta'));
    expect(types.indexOf('response.output_text.delta')).toBeLessThan(types.indexOf('response.done'));
    client.close();
    expect(await client.closedWith()).toMatchObject({ code: 1000 });
    await stack.billing.settled(1);
    const [summary] = stack.billing.settlements;
    expect(summary!.endReason).toBe('client_closed');
    expect(stack.billing.charges).toHaveLength(1);
    expect(summary!.usage).toHaveLength(1);
    await stack.relay.registry.empty();
  });

  it('bills the tail of a response the client walked away from', async () => {
    stack = await startTestRelay({ billing: 'recording', simulator: { chunkIntervalMs: 30, audioChunks: 50 } });
    const client = stack.connect();
    await client.next('session.created');
    client.send({ type: 'response.create' });
    await client.next('response.output_audio.delta');
    client.close();
    await stack.billing.settled(1);
    const [summary] = stack.billing.settlements;
    expect(summary!.endReason).toBe('client_closed');
    expect(summary!.drain).toBe('response_done');
    expect(stack.billing.charges).toHaveLength(1);
    expect((stack.billing.charges[0]!.usage as { output_tokens: number }).output_tokens).toBeGreaterThan(0);
  });

  it('passes the upstream close code and reason to the client', async () => {
    stack = await startTestRelay({ billing: 'recording' });
    const client = stack.connect();
    await client.next('session.created');
    client.send({ type: 'simulator.fault', fault: { kind: 'close', code: 4001, reason: 'upstream says bye' } });
    expect(await client.closedWith()).toEqual({ code: 4001, reason: 'upstream says bye' });
    await stack.billing.settled(1);
    expect(stack.billing.settlements[0]!.endReason).toBe('upstream_closed');
  });

  it('tells the client why the upstream refused the session', async () => {
    stack = await startTestRelay({ billing: 'recording' });
    stack.sim.queueHandshakeFault({ kind: 'refuse', status: 429 });
    const client = stack.connect();
    const error = await client.next('error');
    expect(error.error).toMatchObject({ code: 'upstream_rate_limited' });
    expect(String((error.error as { message: string }).message)).toContain('429');
    expect((await client.closedWith()).code).toBe(1013);
    await stack.billing.settled(1);
  });

  it('refuses a wrong key with 401 and OpenAI\'s error body', async () => {
    stack = await startTestRelay({ billing: 'recording' });
    const client = stack.connect({ key: 'rk_wrong' });
    await client.closedWith();
    expect(client.unexpected?.status).toBe(401);
    expect(JSON.parse(client.unexpected!.body)).toMatchObject({ error: { code: 'invalid_api_key', type: 'invalid_request_error' } });
  });

  it('refuses an unknown model with 400 before the upgrade', async () => {
    stack = await startTestRelay({ billing: 'recording' });
    const client = stack.connect({ model: 'gpt-nonexistent' });
    await client.closedWith();
    expect(client.unexpected?.status).toBe(400);
    expect(JSON.parse(client.unexpected!.body).error.code).toBe('model_not_found');
  });

  it('lets a browser read why its key was refused', async () => {
    stack = await startTestRelay({ billing: 'recording' });
    const client = TestClient.connect(stack.url(), { protocols: ['realtime', 'openai-insecure-api-key.rk_wrong'] });
    const error = await client.next('error');
    expect(error.error).toMatchObject({ code: 'invalid_api_key' });
    expect(await client.closedWith()).toEqual({ code: 1008, reason: 'invalid_api_key' });
    expect(client.socket.protocol).toBe('realtime');
  });

  it('answers a browser with exactly the realtime subprotocol', async () => {
    stack = await startTestRelay({ billing: 'recording' });
    const client = TestClient.connect(stack.url(), { protocols: [`openai-insecure-api-key.${TEST_KEY}`, 'realtime'] });
    await client.next('session.created');
    expect(client.socket.protocol).toBe('realtime');
    client.close();
    await stack.billing.settled(1);
  });
});

describe('while the upstream is dialled', () => {
  it('holds client frames in order and delivers them once the upstream answers', async () => {
    stack = await startTestRelay({ billing: 'recording', simulator: { chunkIntervalMs: 1 } });
    stack.sim.queueHandshakeFault({ kind: 'hold' });
    const client = stack.connect();
    await eventually('the held dial', () => stack.sim.handshakes.length > 0);
    client.send({ type: 'session.update', session: { type: 'realtime', instructions: 'first' } });
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    stack.sim.releaseHeld();
    const done = await client.next('response.done');
    const types = client.events.map((e) => e.type);
    expect(types.indexOf('session.created')).toBeLessThan(types.indexOf('session.updated'));
    expect(types.indexOf('session.updated')).toBeLessThan(types.indexOf('response.created'));
    expect(done.response).toMatchObject({ status: 'completed' });
  });

  it('closes 1008 with queue_overflow when a client sends too much before the upstream answers', async () => {
    stack = await startTestRelay({ billing: 'recording', settings: { connectQueueFrames: 10 } });
    stack.sim.queueHandshakeFault({ kind: 'hold' });
    const client = stack.connect();
    await eventually('the held dial', () => stack.sim.handshakes.length > 0);
    for (let i = 0; i < 11; i++) client.send({ type: 'input_audio_buffer.clear' });
    expect((await client.next('error')).error).toMatchObject({ code: 'queue_overflow' });
    expect((await client.closedWith()).code).toBe(1008);
    await stack.billing.settled(1);
    expect(stack.billing.settlements[0]!.endReason).toBe('error:queue_overflow');
  });

  it('abandons the dial when the client leaves', async () => {
    stack = await startTestRelay({ billing: 'recording' });
    stack.sim.queueHandshakeFault({ kind: 'hang' });
    const client = stack.connect();
    await eventually('the dial', () => stack.sim.handshakes.length > 0);
    expect(stack.sim.socketCount).toBe(1);
    client.close();
    await stack.billing.settled(1);
    expect(stack.billing.settlements[0]!.endReason).toBe('client_closed');
    await eventually('the upstream socket to be closed', () => stack.sim.socketCount === 0);
  });
});

describe('when the upstream goes away', () => {
  it('still delivers the response.done the client is owed before closing with the upstream code', async () => {
    stack = await startTestRelay({ billing: 'recording', simulator: { chunkIntervalMs: 1 } });
    stack.billing.chargeDelayMs = 300;
    const client = stack.connect();
    await client.next('session.created');
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await client.next('response.output_text.done');
    // The response is over upstream; its response.done waits on the (slow) charge when the upstream closes.
    await new Promise((resolve) => setTimeout(resolve, 50));
    stack.sim.strikeAll({ kind: 'close', code: 4001, reason: 'gone' });
    expect(await client.closedWith()).toEqual({ code: 4001, reason: 'gone' });
    expect(client.events.at(-1)!.type).toBe('response.done');
    expect(stack.billing.charges).toHaveLength(1);
  });
});
