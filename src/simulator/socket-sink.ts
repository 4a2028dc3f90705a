/**
 * A WebSocket as a session's transport: the sink its server events go to, and
 * the source of its client events and pings.
 */
import type { RawData, WebSocket } from 'ws';
import type { SessionSink, SimulatedSession } from './session.js';

export class WebSocketSink implements SessionSink {
  constructor(private readonly socket: WebSocket) {}

  get isOpen(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  send(frame: string): void {
    this.socket.send(frame);
  }

  close(code: number, reason: string): void {
    this.socket.close(code, reason);
  }

  drop(): void {
    this.socket.terminate();
  }

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }
}

/**
 * Feeds `socket`'s frames to `session` and answers its pings while the session
 * does; `onClose` runs once when the socket closes.
 */
export function feedSession(socket: WebSocket, session: SimulatedSession, onClose: () => void): void {
  socket.on('message', (data: RawData, isBinary: boolean) => session.receive(data as Buffer, isBinary));
  socket.on('ping', (data: Buffer) => {
    if (session.answersPings) socket.pong(data);
  });
  socket.once('close', onClose);
  // A peer's protocol error closes the socket; ws reports it here, and without a listener it would throw.
  socket.on('error', () => {});
}
