import type { InspectionEvent } from 'xstate';
import { createRelayServer, type RelayServer, type RelayServerOptions } from '../../src/server/relay-server.js';
import type { Gatekeeper } from '../../src/server/ports.js';
import type { Upstream } from '../../src/server/upstream.js';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/simulator/index.js';
import { TestClient } from './client.js';
import { RecordingBilling, TEST_KEY } from './recording-billing.js';

export const FAST_TIMINGS: RelayServerOptions['timings'] = {
  connectTimeoutMs: 2_000,
  drainTimeoutMs: 2_000,
  pingIntervalMs: 15_000,
  idleTimeoutMs: 600_000,
  maxSessionMs: 3_600_000,
  closeTimeoutMs: 1_000,
  highWaterBytes: 4 * 1024 * 1024,
  stallTimeoutMs: 10_000,
  connectQueueFrames: 512,
  connectQueueBytes: 8 * 1024 * 1024,
  headerTimeoutMs: 10_000,
  shutdownTimeoutMs: 10_000,
};

export function simulatorUpstream(sim: Simulator, name = 'sim', extra: Partial<Upstream> = {}): Upstream {
  return { name, kind: 'openai', baseUrl: `${sim.url.replace(/^ws/, 'http')}/v1`, apiKey: 'sk-sim', models: [], deployments: {}, priority: 0, ...extra };
}

export interface Stack {
  sim: Simulator;
  relay: RelayServer;
  billing: RecordingBilling;
  url(model?: string): string;
  connect(options?: { key?: string; model?: string; protocols?: string[]; headers?: Record<string, string> }): TestClient;
  close(): Promise<void>;
}

export interface StackOptions {
  timings?: Partial<RelayServerOptions['timings']>;
  simulator?: SimulatorOptions;
  maxPayloadBytes?: number;
  gatekeeper?: Gatekeeper;
  inspect?: (event: InspectionEvent) => void;
  relay?: Partial<RelayServerOptions>;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const sim = await startSimulator(options.simulator ?? {});
  const billing = new RecordingBilling();
  const relay = createRelayServer({
    host: '127.0.0.1',
    port: 0,
    timings: { ...FAST_TIMINGS, ...options.timings },
    maxPayloadBytes: options.maxPayloadBytes ?? 16 * 1024 * 1024,
    allowedOrigins: [],
    allowInsecureSubprotocolKey: false,
    gatekeeper: options.gatekeeper ?? billing,
    upstreamsFor: () => [simulatorUpstream(sim)],
    inspect: options.inspect,
    ...options.relay,
  });
  await relay.listen();
  const url = (model = 'gpt-realtime') => `${relay.url()}/v1/realtime?model=${encodeURIComponent(model)}`;
  const clients: TestClient[] = [];
  return {
    sim,
    relay,
    billing,
    url,
    connect(connectOptions = {}) {
      const client = TestClient.connect(url(connectOptions.model), {
        key: 'key' in connectOptions ? connectOptions.key : TEST_KEY,
        protocols: connectOptions.protocols,
        headers: connectOptions.headers,
      });
      clients.push(client);
      return client;
    },
    async close() {
      for (const client of clients) client.socket.terminate();
      await relay.close();
      await sim.close();
    },
  };
}
