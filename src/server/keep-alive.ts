import type WebSocket from 'ws';
import type { SessionEvent } from '../machines/session.js';

export interface KeepAliveOptions {
  client: WebSocket;
  upstream: WebSocket;
  pingIntervalMs: number;
  idleTimeoutMs: number;
  /** When the client last sent a frame (a timestamp the reader updates; nothing is re-armed per frame). */
  lastClientFrameAt(): number;
  report(event: SessionEvent): void;
}

/**
 * Pings both peers and watches the client for idleness. A peer that misses a
 * pong is terminated, so that its reader reports the close like any other.
 * Returns the disposer, which clears both timers and removes the listeners.
 */
export function keepAlive(options: KeepAliveOptions): () => void {
  const { client, upstream, pingIntervalMs, idleTimeoutMs, lastClientFrameAt, report } = options;
  let clientAnswered = true;
  let upstreamAnswered = true;
  const clientOnPong = () => {
    clientAnswered = true;
  };
  const upstreamOnPong = () => {
    upstreamAnswered = true;
  };
  client.on('pong', clientOnPong);
  upstream.on('pong', upstreamOnPong);
  const pingTimer = setInterval(() => {
    if (!clientAnswered) client.terminate();
    else if (client.readyState === 1) {
      clientAnswered = false;
      client.ping();
    }
    if (!upstreamAnswered) upstream.terminate();
    else if (upstream.readyState === 1) {
      upstreamAnswered = false;
      upstream.ping();
    }
  }, pingIntervalMs);
  let idleTimer: NodeJS.Timeout;
  const checkIdle = () => {
    const idleFor = Date.now() - lastClientFrameAt();
    if (idleFor >= idleTimeoutMs) report({ type: 'CANCEL', reason: 'idle_timeout' });
    else idleTimer = setTimeout(checkIdle, idleTimeoutMs - idleFor);
  };
  idleTimer = setTimeout(checkIdle, Math.max(0, idleTimeoutMs - (Date.now() - lastClientFrameAt())));
  return function stopKeepAlive() {
    clearInterval(pingTimer);
    clearTimeout(idleTimer);
    client.off('pong', clientOnPong);
    upstream.off('pong', upstreamOnPong);
  };
}
