import type WebSocket from 'ws';
import type { SessionEvent } from '../machines/session.js';
import { watchIdle } from './keep-alive.js';

export interface SidebandKeepAliveOptions {
  sideband: WebSocket;
  pingIntervalMs: number;
  idleTimeoutMs: number;
  /** When the sideband last carried a server event: the only sign of the caller the relay sees. */
  lastEventAt(): number;
  report(event: SessionEvent): void;
}

/**
 * A call's keep-alive: the relay holds one socket of it, the sideband, and
 * pings that one; a sideband that misses a pong is terminated, so its reader
 * reports the close like any other. A call whose sideband has been silent
 * for the idle timeout (no speech, no response) is cancelled as idle.
 * Returns the disposer, which clears both timers and the listener.
 */
export function sidebandKeepAlive(options: SidebandKeepAliveOptions): () => void {
  const { sideband, pingIntervalMs, idleTimeoutMs, lastEventAt, report } = options;
  let answered = true;
  const sidebandOnPong = () => {
    answered = true;
  };
  sideband.on('pong', sidebandOnPong);
  const pingTimer = setInterval(function sidebandKeepAliveOnTick() {
    if (!answered) sideband.terminate();
    else if (sideband.readyState === 1) {
      answered = false;
      sideband.ping();
    }
  }, pingIntervalMs);
  const stopIdleWatch = watchIdle(lastEventAt, idleTimeoutMs, report);
  return function stopSidebandKeepAlive() {
    clearInterval(pingTimer);
    stopIdleWatch();
    sideband.off('pong', sidebandOnPong);
  };
}
