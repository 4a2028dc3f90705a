import { afterEach, describe, expect, it } from 'vitest';
import { resolveAlias, upstreamsServing } from '../../src/config/upstreams.js';
import { upstreamRequest, type Upstream } from '../../src/server/upstream.js';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { expectedResponseCost, type ResponseUsage } from './expected-cost.js';
import { EVERY_KIND_OF_TOKEN_USAGE } from '../helpers/usage.js';

let stack: LedgerTestRelay | undefined;
let sim: Simulator | undefined;
afterEach(async () => {
  await stack?.close();
  await sim?.close();
  stack = sim = undefined;
});

async function oneResponse(model: string): Promise<void> {
  const client = stack!.connect({ model });
  await client.next('session.created');
  client.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(EVERY_KIND_OF_TOKEN_USAGE) } } });
  const done = await client.next('response.done');
  expect((done.response as { usage: unknown }).usage).toEqual(EVERY_KIND_OF_TOKEN_USAGE);
  client.close();
  await stack!.idle();
}

describe('model aliases', () => {
  it('bills an alias at the price of the model actually served', async () => {
    sim = await startSimulator({ chunkIntervalMs: 1 });
    stack = await startTestRelay({
      upstreams: {
        upstreams: [{ name: 'openai', kind: 'openai', baseUrl: sim.url.replace(/^ws/, 'http') + '/v1', apiKey: 'sk-sim' }],
        aliases: { fast: 'gpt-realtime-mini' },
      },
    });
    await oneResponse('fast');
    expect(sim.handshakes[0]!.query).toEqual({ model: 'gpt-realtime-mini' });
    const [charge] = await stack.ledger.usage({ key: 'demo' });
    const expected = expectedResponseCost('gpt-realtime-mini', EVERY_KIND_OF_TOKEN_USAGE);
    expect(charge).toMatchObject({ model: 'gpt-realtime-mini', costNano: expected });
    // Not the price of the bigger model the alias does not name.
    expect(expected).not.toBe(expectedResponseCost('gpt-realtime', EVERY_KIND_OF_TOKEN_USAGE));
    expect(stack.sessions()[0]).toMatchObject({ model: 'gpt-realtime-mini', spendNano: expected });
  });

  it('maps an alias to the upstream\'s own deployment name and still prices the model', async () => {
    sim = await startSimulator({ azure: true, apiKey: 'az-key', chunkIntervalMs: 1 });
    stack = await startTestRelay({
      upstreams: {
        upstreams: [{ name: 'azure', kind: 'azure', baseUrl: sim.url.replace(/^ws/, 'http'), apiKey: 'az-key', deployments: { 'gpt-realtime': 'rt-prod-2025' } }],
        aliases: { assistant: 'gpt-realtime' },
      },
    });
    await oneResponse('assistant');
    expect(sim.handshakes[0]!.query).toEqual({ model: 'rt-prod-2025' });
    const [charge] = await stack.ledger.usage({ key: 'demo' });
    expect(charge).toMatchObject({ model: 'gpt-realtime', costNano: expectedResponseCost('gpt-realtime', EVERY_KIND_OF_TOKEN_USAGE) });
  });
});

describe('model names that are also names of object properties', () => {
  it.for(['constructor', '__proto__', 'toString', 'hasOwnProperty'])('refuses model=%s as model_not_found, naming the model as given', async (model) => {
    stack = await startTestRelay();
    const client = stack.connect({ model });
    await client.closedWith();
    expect(client.unexpected?.status).toBe(400);
    const { error } = JSON.parse(client.unexpected!.body) as { error: { code: string; type: string; message: string } };
    expect(error).toMatchObject({ code: 'model_not_found', type: 'invalid_request_error' });
    expect(error.message).toContain(`"${model}"`);
    expect(error.message).not.toMatch(/function|native code|\[object/);
  });

  it('an upstream that lists its models and deployments serves none of them', () => {
    const upstream: Upstream = { name: 'azure', kind: 'azure', baseUrl: 'https://example.test/openai', apiKey: 'k', models: ['gpt-realtime'], deployments: { 'gpt-realtime': 'rt' }, priority: 0 };
    const config = { upstreams: [upstream], aliases: {} };
    for (const model of ['constructor', '__proto__', 'toString']) {
      expect(resolveAlias(config, model)).toBe(model);
      expect(upstreamsServing(config, model)).toEqual([]);
      expect(upstreamRequest({ ...upstream, kind: 'openai' }, { model }).url).toContain(`model=${model}`);
    }
  });
});
