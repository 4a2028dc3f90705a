import type WebSocket from 'ws';
import { RelayError } from '../errors.js';
import type { SideClose } from '../machines/close-plan.js';
import { truncateCloseReason } from '../protocol/close-codes.js';

let eventCounter = 0;
/** Ids for events the relay itself sends; cheap and unique within the process. */
export function relayEventId(): string {
  eventCounter = (eventCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `event_relay_${eventCounter.toString(36)}`;
}

/**
 * Closes one socket the way the close plan says: close frame first (after an
 * `error` event, so that even a browser can read why); a peer that does not
 * finish the handshake within `closeTimeoutMs` is terminated. `closed` runs
 * once the socket is closed, with its close code (null: it already was).
 * Like ws's own close timer, the timer is cleared in the close handler; the
 * returned disposer clears it and that handler.
 */
export function closeSocket(socket: WebSocket, how: SideClose | null, closeTimeoutMs: number, closed: (code: number | null) => void): () => void {
  if (socket.readyState === 3) {
    closed(null);
    return function closeNothing() {};
  }
  let timer: NodeJS.Timeout | undefined;
  const socketOnClose = (code: number) => {
    clearTimeout(timer);
    closed(code);
  };
  socket.once('close', socketOnClose);
  if (socket.readyState === 1 && how) {
    if (how.error) socket.send(new RelayError(how.error.code, how.error.message).toEvent(relayEventId()));
    socket.close(how.code, truncateCloseReason(how.reason));
    timer = setTimeout(() => socket.terminate(), closeTimeoutMs);
  } else if (socket.readyState !== 2) {
    socket.terminate();
  } else {
    timer = setTimeout(() => socket.terminate(), closeTimeoutMs);
  }
  return function stopClosingSocket() {
    clearTimeout(timer);
    socket.off('close', socketOnClose);
  };
}

