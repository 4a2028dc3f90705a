/**
 * The physical limit for a Node relay: per client connection, one upstream
 * socket, and every frame sent on as the same Buffer, as a text frame. The
 * only extra is the flow control any relay needs (pause the source while the
 * sink has more than `highWaterBytes` unsent), so that a flood cannot grow
 * its memory without bound.
 */
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';

export interface BarePipe {
  url: string;
  close(): Promise<void>;
}

const TEXT = { binary: false } as const;

function forward(source: WebSocket, sink: WebSocket, highWaterBytes: number) {
  const resume = () => source.resume();
  return (data: WebSocket.RawData) => {
    if (sink.bufferedAmount > highWaterBytes) {
      source.pause();
      sink.send(data as Buffer, TEXT, resume);
    } else {
      sink.send(data as Buffer, TEXT);
    }
  };
}

function closeCode(code: number): number {
  return code === 1005 || code === 1006 ? 1000 : code;
}

export async function startBarePipe(options: { upstreamUrl: string; upstreamKey: string; highWaterBytes?: number }): Promise<BarePipe> {
  const highWaterBytes = options.highWaterBytes ?? 4 * 1024 * 1024;
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, clientTracking: false, maxPayload: 16 * 1024 * 1024 });
  wss.on('connection', (client: WebSocket, request: IncomingMessage) => {
    const upstream = new WebSocket(`${options.upstreamUrl}${request.url ?? '/'}`, {
      headers: { Authorization: `Bearer ${options.upstreamKey}` },
      perMessageDeflate: false,
      maxPayload: 256 * 1024 * 1024,
    });
    const early: Buffer[] = [];
    const toUpstream = forward(client, upstream, highWaterBytes);
    client.on('message', (data) => {
      if (upstream.readyState === WebSocket.OPEN) toUpstream(data);
      else early.push(data as Buffer);
    });
    upstream.on('open', () => {
      for (const frame of early.splice(0)) toUpstream(frame);
    });
    upstream.on('message', forward(upstream, client, highWaterBytes));
    client.on('close', (code) => {
      if (upstream.readyState === WebSocket.OPEN) upstream.close(closeCode(code));
      else upstream.terminate();
    });
    upstream.on('close', (code) => {
      if (client.readyState === WebSocket.OPEN) client.close(closeCode(code));
    });
    client.on('error', () => undefined);
    upstream.on('error', () => client.terminate());
  });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => wss.close(() => resolve())),
  };
}
