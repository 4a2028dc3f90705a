import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

/**
 * An upstream that does exactly what a test scripts, byte for byte, for the
 * few cases the simulator has no reason to do (events no API has defined
 * yet). It records every frame it receives, as received.
 */
export interface ScriptedUpstream {
  /** Base URL for an upstream entry or OPENAI_BASE_URL: http://127.0.0.1:<port>/v1 */
  baseUrl: string;
  /** Text frames received from the relay, as received. */
  readonly received: string[];
  readonly handshakes: Array<{ url: string; headers: IncomingHttpHeaders }>;
  /** Resolves when `count` frames have been received. */
  receivedCount(count: number): Promise<void>;
  close(): Promise<void>;
}

export async function startScriptedUpstream(script: (socket: WebSocket) => void): Promise<ScriptedUpstream> {
  const received: string[] = [];
  const handshakes: ScriptedUpstream['handshakes'] = [];
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  const sockets = new Set<WebSocket>();
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const server = createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket, head) => {
    handshakes.push({ url: req.url ?? '', headers: req.headers });
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      ws.on('error', () => undefined);
      ws.on('message', (data: Buffer) => {
        received.push(data.toString('utf8'));
        for (const waiter of waiters.filter((w) => received.length >= w.count)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      });
      script(ws);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    received,
    handshakes,
    receivedCount(count) {
      if (received.length >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    close() {
      for (const socket of sockets) socket.terminate();
      wss.close();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
