import WebSocket from 'ws';
import { INTERNAL_ERROR, isSendableCloseCode, truncateCloseReason } from '../../protocol/close-codes.js';

/** Frames a joining client sends before the upstream sideband is open; more closes the join. */
const MAX_EARLY_FRAMES = 64;

/**
 * A tenant's socket joined to its call's events: one more sideband of the
 * call at the upstream, frames passed both ways untouched and unread. What
 * it carries is never charged: the call's own session reads the same
 * `response.done` events over its own sideband and charges each once.
 */
export function joinSideband(client: WebSocket, request: { url: string; headers: Record<string, string> }, closeTimeoutMs: number): void {
  const upstream = new WebSocket(request.url, { headers: request.headers, perMessageDeflate: false, followRedirects: false, maxPayload: 256 * 1024 * 1024 });
  const early: Array<{ data: WebSocket.RawData; isBinary: boolean }> = [];
  let ended = false;
  const end = (target: WebSocket, code: number, reason: string) => {
    if (target.readyState === WebSocket.OPEN) target.close(isSendableCloseCode(code) ? code : INTERNAL_ERROR, truncateCloseReason(reason));
    else if (target.readyState === WebSocket.CONNECTING) target.terminate();
    setTimeout(() => target.terminate(), closeTimeoutMs).unref();
  };
  const finish = (code: number, reason: string) => {
    if (ended) return;
    ended = true;
    end(client, code, reason);
    end(upstream, code, reason);
  };
  client.on('error', () => undefined);
  upstream.on('error', () => finish(1011, 'upstream_error'));
  upstream.on('unexpected-response', (_request, response) => {
    response.resume();
    finish(1011, 'upstream_rejected');
  });
  client.on('message', (data, isBinary) => {
    if (upstream.readyState === WebSocket.OPEN) upstream.send(data, { binary: isBinary });
    else if (early.length < MAX_EARLY_FRAMES) early.push({ data, isBinary });
    else finish(1008, 'queue_overflow');
  });
  upstream.on('open', () => {
    for (const frame of early.splice(0)) upstream.send(frame.data, { binary: frame.isBinary });
  });
  upstream.on('message', (data, isBinary) => {
    if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
  });
  client.on('close', (code) => finish(code, ''));
  upstream.on('close', (code, reason) => finish(code, reason.toString()));
}
