import { afterEach, describe, expect, it } from 'vitest';
import { TestClient } from '../helpers/client.js';
import { TEST_KEY } from '../helpers/recording-billing.js';
import { startStack, type Stack } from '../helpers/stack.js';

let stack: Stack;
afterEach(async () => {
  await stack?.close();
});

describe('relaying a session', () => {
  it('relays a text response both ways in order and settles once', async () => {
    stack = await startStack({ simulator: { chunkIntervalMs: 1 } });
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
    stack = await startStack({ simulator: { chunkIntervalMs: 30, audioChunks: 50 } });
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
    stack = await startStack();
    const client = stack.connect();
    await client.next('session.created');
    client.send({ type: 'simulator.fault', fault: { kind: 'close', code: 4001, reason: 'upstream says bye' } });
    expect(await client.closedWith()).toEqual({ code: 4001, reason: 'upstream says bye' });
    await stack.billing.settled(1);
    expect(stack.billing.settlements[0]!.endReason).toBe('upstream_closed');
  });

  it('tells the client why the upstream refused the session', async () => {
    stack = await startStack();
    stack.sim.queueHandshakeFault({ kind: 'refuse', status: 429 });
    const client = stack.connect();
    const error = await client.next('error');
    expect(error.error).toMatchObject({ code: 'upstream_rate_limited' });
    expect(String((error.error as { message: string }).message)).toContain('429');
    expect((await client.closedWith()).code).toBe(1013);
    await stack.billing.settled(1);
  });

  it('refuses a wrong key with 401 and OpenAI\'s error body', async () => {
    stack = await startStack();
    const client = stack.connect({ key: 'rk_wrong' });
    await client.closedWith();
    expect(client.unexpected?.status).toBe(401);
    expect(JSON.parse(client.unexpected!.body)).toMatchObject({ error: { code: 'invalid_api_key', type: 'invalid_request_error' } });
  });

  it('refuses an unknown model with 400 before the upgrade', async () => {
    stack = await startStack();
    const client = stack.connect({ model: 'gpt-nonexistent' });
    await client.closedWith();
    expect(client.unexpected?.status).toBe(400);
    expect(JSON.parse(client.unexpected!.body).error.code).toBe('model_not_found');
  });

  it('lets a browser read why its key was refused', async () => {
    stack = await startStack();
    const client = TestClient.connect(stack.url(), { protocols: ['realtime', 'openai-insecure-api-key.rk_wrong'] });
    const error = await client.next('error');
    expect(error.error).toMatchObject({ code: 'invalid_api_key' });
    expect(await client.closedWith()).toEqual({ code: 1008, reason: 'invalid_api_key' });
    expect(client.socket.protocol).toBe('realtime');
  });

  it('answers a browser with exactly the realtime subprotocol', async () => {
    stack = await startStack();
    const client = TestClient.connect(stack.url(), { protocols: [`openai-insecure-api-key.${TEST_KEY}`, 'realtime'] });
    await client.next('session.created');
    expect(client.socket.protocol).toBe('realtime');
    client.close();
    await stack.billing.settled(1);
  });
});
