import type { IncomingMessage, Server } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Hono } from 'hono';
import type { WebSocket, WebSocketServer } from 'ws';
import { ERRORS, errorBody } from '../errors.js';

/**
 * Upgrade requests go through the same Hono app as every other request, so
 * that authentication, limits and model checks are ordinary typed middleware.
 *
 * @hono/node-server 2.x has a built-in upgrade, but it answers every refused
 * upgrade with an empty body. OpenAI clients read the reason for a refusal
 * from the JSON error body, so this adapter writes the app's Response itself
 * (status, headers and body) or, when a route accepted the upgrade, hands the
 * socket to ws, which also lets us choose the subprotocol and cap the payload.
 */
export type UpgradeBindings = {
  incoming: IncomingMessage;
  /** Set by the route that accepts the upgrade; called with the open socket. */
  accept?: (socket: WebSocket) => void;
};

export type UpgradeEnv = { Bindings: UpgradeBindings };

function upgradeRequest(request: IncomingMessage): Request {
  const scheme = (request.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
  const host = request.headers.host ?? 'localhost';
  let url: URL;
  try {
    url = new URL(request.url ?? '/', `${scheme}://${host}`);
  } catch {
    url = new URL(request.url ?? '/', `${scheme}://localhost`);
  }
  const headers = new Headers();
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined) continue;
    headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  return new Request(url, { headers });
}

async function writeResponse(socket: Duplex, response: Response): Promise<void> {
  const body = Buffer.from(await response.arrayBuffer());
  if (socket.destroyed) return;
  const lines = [`HTTP/1.1 ${response.status} ${STATUS_CODES[response.status] ?? ''}`];
  response.headers.forEach((value, name) => {
    if (name !== 'content-length' && name !== 'connection' && name !== 'transfer-encoding') lines.push(`${name}: ${value}`);
  });
  lines.push(`Content-Length: ${body.length}`, 'Connection: close', '', '');
  socket.end(Buffer.concat([Buffer.from(lines.join('\r\n')), body]));
}

export function routeUpgrades(server: Server, app: Hono<UpgradeEnv>, wss: WebSocketServer): void {
  server.on('upgrade', function serverOnUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer) {
    socket.on('error', socketOnError);
    const env: UpgradeBindings = { incoming: request };
    void (async () => {
      let response: Response;
      try {
        response = await app.fetch(upgradeRequest(request), env);
      } catch {
        response = new Response(JSON.stringify(errorBody('internal_error')), {
          status: ERRORS.internal_error.status,
          headers: { 'content-type': 'application/json' },
        });
      }
      if (socket.destroyed) return;
      const accept = env.accept;
      if (!accept || response.status !== 200) {
        await writeResponse(socket, response);
        return;
      }
      wss.handleUpgrade(request, socket, head, (ws) => {
        socket.off('error', socketOnError);
        accept(ws);
      });
    })();
  });
}

function socketOnError(): void {
  // A client that vanishes mid-handshake is not an error of the relay's.
}
