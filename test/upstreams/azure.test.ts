import { afterEach, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { TestClient } from '../helpers/client.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

let stack: LedgerTestRelay | undefined;
let azure: Simulator | undefined;
afterEach(async () => {
  await stack?.close();
  await azure?.close();
  stack = azure = undefined;
});

const AZURE_KEY = 'azure-resource-key';

async function sessionThroughAzure(kind: 'azure' | 'azure-preview', apiVersion?: string): Promise<TestClient> {
  azure = await startSimulator({ azure: true, apiKey: AZURE_KEY, chunkIntervalMs: 1 });
  stack = await startTestRelay({
    upstreams: {
      upstreams: [
        {
          name: 'azure-east',
          kind,
          baseUrl: azure.url.replace(/^ws/, 'http'),
          apiKey: AZURE_KEY,
          models: ['gpt-realtime'],
          deployments: { 'gpt-realtime': 'prod-realtime' },
          ...(apiVersion ? { apiVersion } : {}),
        },
      ],
    },
  });
  const client = stack.connect();
  const created = await client.next('session.created');
  expect(created.session).toMatchObject({ model: 'prod-realtime' });
  client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
  await client.next('response.done');
  client.close();
  await stack.idle();
  return client;
}

function expectNoClientCredentials(headers: Record<string, string | undefined>, relayKey: string): void {
  expect(headers.authorization).toBeUndefined();
  for (const value of Object.values(headers)) expect(value ?? '').not.toContain(relayKey);
}

describe('Azure OpenAI upstreams', () => {
  it('dials the GA shape /openai/v1/realtime?model=<deployment> with api-key, and bills the model', async () => {
    await sessionThroughAzure('azure');
    const [handshake] = azure!.handshakes;
    expect(azure!.handshakes).toHaveLength(1);
    expect(handshake!.path).toBe('/openai/v1/realtime');
    expect(handshake!.query).toEqual({ model: 'prod-realtime' });
    expect(handshake!.headers['api-key']).toBe(AZURE_KEY);
    expectNoClientCredentials(handshake!.headers, stack!.key);
    const [charge] = await stack!.ledger.usage({ key: 'demo' });
    // The deployment is Azure's name for it; the price is the model's.
    expect(charge).toMatchObject({ model: 'gpt-realtime', kind: 'response' });
    expect(stack!.settlements()[0]).toMatchObject({ chargeCount: 1, totalNano: charge!.costNano });
    expect(stack!.settlements()[0]!.summary).toMatchObject({ upstream: 'azure-east', servedModel: 'gpt-realtime' });
  });

  it('dials the preview shape /openai/realtime?api-version=…&deployment=… with api-key', async () => {
    await sessionThroughAzure('azure-preview', '2024-10-01-preview');
    const [handshake] = azure!.handshakes;
    expect(handshake!.path).toBe('/openai/realtime');
    expect(handshake!.query).toEqual({ 'api-version': '2024-10-01-preview', deployment: 'prod-realtime' });
    expect(handshake!.headers['api-key']).toBe(AZURE_KEY);
    expectNoClientCredentials(handshake!.headers, stack!.key);
    expect(await stack!.ledger.usage({ key: 'demo' })).toHaveLength(1);
  });

  it('refuses a model no upstream serves before the upgrade', async () => {
    await sessionThroughAzure('azure');
    const client = stack!.connect({ model: 'gpt-realtime-mini' });
    await client.closedWith();
    expect(client.unexpected?.status).toBe(400);
    expect(JSON.parse(client.unexpected!.body)).toMatchObject({ error: { code: 'model_not_found' } });
    expect(azure!.handshakes).toHaveLength(1);
  });
});
