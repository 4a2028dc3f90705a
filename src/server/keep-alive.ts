import type WebSocket from 'ws';
import { ERRORS } from '../errors.js';
import type { SessionEvent } from '../machines/session.js';

/** What the client of an upstream that stopped answering pings is told. */
const UPSTREAM_SILENT: SessionEvent = {
  type: 'ERROR',
  source: 'upstream',
  error: { code: 'upstream_timeout', message: 'The upstream Realtime API stopped answering pings.', closeCode: ERRORS.upstream_timeout.close },
};

/** The session's backpressure as keep-alive reads it, once per ping tick. */
export interface Backpressure {
  /** Either direction has its source paused now. */
  readonly paused: boolean;
  /** Pauses so far, both directions: a change means a pause began since it was last read. */
  readonly pauses: number;
}

export interface KeepAliveOptions {
  client: WebSocket;
  upstream: WebSocket;
  pingIntervalMs: number;
  idleTimeoutMs: number;
  /** When the client last sent a frame (a timestamp the reader updates; nothing is re-armed per frame). */
  lastClientFrameAt(): number;
  backpressure(): Backpressure;
  report(event: SessionEvent): void;
}

/**
 * Pings both peers and watches the client for idleness. A peer that misses a
 * pong is terminated. A client's reader reports that close like any other; a
 * silent upstream is reported as such, so that its client is told why.
 *
 * A missed pong counts only if neither direction was held by backpressure
 * since the ping: a socket the relay stopped reading cannot deliver its pong,
 * and a ping queued behind data a slow peer has not taken cannot reach it.
 * Such a peer is judged by the stall timeout instead (see FramePipe).
 *
 * Returns the disposer, which clears both timers and removes the listeners.
 */
export function keepAlive(options: KeepAliveOptions): () => void {
  const { client, upstream, pingIntervalMs, idleTimeoutMs, lastClientFrameAt, backpressure, report } = options;
  let clientAnswered = true;
  let upstreamAnswered = true;
  let pausedAtPing = false;
  let pausesAtPing = backpressure().pauses;
  const clientOnPong = () => {
    clientAnswered = true;
  };
  const upstreamOnPong = () => {
    upstreamAnswered = true;
  };
  client.on('pong', clientOnPong);
  upstream.on('pong', upstreamOnPong);
  const pingTimer = setInterval(function keepAliveOnTick() {
    const now = backpressure();
    const heldSincePing = pausedAtPing || now.paused || now.pauses !== pausesAtPing;
    pausedAtPing = now.paused;
    pausesAtPing = now.pauses;
    if (!clientAnswered && !heldSincePing) client.terminate();
    else if (client.readyState === 1) {
      clientAnswered = false;
      client.ping();
    }
    if (!upstreamAnswered && !heldSincePing) {
      // The close plan sends its close frame; a peer that answers nothing is then not waited for.
      report(UPSTREAM_SILENT);
      upstream.terminate();
    } else if (upstream.readyState === 1) {
      upstreamAnswered = false;
      upstream.ping();
    }
  }, pingIntervalMs);
  const stopIdleWatch = watchIdle(lastClientFrameAt, idleTimeoutMs, report);
  return function stopKeepAlive() {
    clearInterval(pingTimer);
    stopIdleWatch();
    client.off('pong', clientOnPong);
    upstream.off('pong', upstreamOnPong);
  };
}

/**
 * Cancels the session as idle once `lastAt` is `idleTimeoutMs` old. One timer,
 * re-armed only when it fires: nothing is done per frame. Returns its disposer.
 */
export function watchIdle(lastAt: () => number, idleTimeoutMs: number, report: (event: SessionEvent) => void): () => void {
  let idleTimer: NodeJS.Timeout;
  const checkIdle = () => {
    const idleFor = Date.now() - lastAt();
    if (idleFor >= idleTimeoutMs) report({ type: 'CANCEL', reason: 'idle_timeout' });
    else idleTimer = setTimeout(checkIdle, idleTimeoutMs - idleFor);
  };
  idleTimer = setTimeout(checkIdle, Math.max(0, idleTimeoutMs - (Date.now() - lastAt())));
  return function stopIdleWatch() {
    clearTimeout(idleTimer);
  };
}
