import { createInspector, type StatelyInspectionEvent } from '@statelyai/inspect';
import type { InspectionEvent } from 'xstate';
import WebSocket from 'ws';
import type { Logger } from './logger.js';
import { sanitizeContext, sanitizeEvent, sanitizeInspectionEvent } from './inspection.js';

export interface SessionInspectorOptions {
  /** WebSocket endpoint of the inspector (RELAY_INSPECT_URL). */
  url: string;
  log?: Logger;
  /** Wait between connection attempts while nothing listens. Default 5000. */
  retryMs?: number;
  /** Events kept while the inspector is not connected; the oldest go first. Default 1000. */
  maxDeferredEvents?: number;
  /** How long stop() waits for the close handshake before dropping the socket. Default 1000. */
  closeTimeoutMs?: number;
}

export interface SessionInspector {
  /** Pass to `createActor(machine, { inspect })`: the actor and all its children are inspected. */
  readonly inspect: (event: InspectionEvent) => void;
  /** Sends what is queued, closes the socket and stops retrying; the process can then exit. */
  stop(): Promise<void>;
}

/**
 * The socket to the inspector, owned here. @statelyai/inspect's own
 * WebSocket adapter retries every 5 s from a timer that stop() cannot
 * clear, so a relay pointed at an inspector that is not running would never
 * exit; this one clears its retry timer on stop() and never holds the
 * process open while it waits to retry.
 */
class InspectorSocket {
  private socket: WebSocket | null = null;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly deferred: string[] = [];
  private stopped = false;
  private warned = false;

  constructor(private readonly options: Required<Omit<SessionInspectorOptions, 'log'>> & { log?: Logger }) {}

  start(): void {
    if (this.stopped || this.socket) return;
    const socket = new WebSocket(this.options.url, { perMessageDeflate: false });
    this.socket = socket;
    socket.on('open', () => {
      if (this.warned) this.options.log?.info({ url: this.options.url }, 'connected to the Stately inspector');
      this.warned = false;
      for (const message of this.deferred.splice(0)) socket.send(message);
    });
    socket.on('error', (error) => {
      if (this.warned || this.stopped) return;
      this.warned = true;
      this.options.log?.warn({ url: this.options.url, err: error.message }, `the Stately inspector does not answer; retrying every ${Math.round(this.options.retryMs / 1000)} s`);
    });
    socket.on('close', () => {
      if (this.socket === socket) this.socket = null;
      if (this.stopped) return;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.start();
      }, this.options.retryMs);
      // Waiting to retry is no reason to keep the process alive.
      this.retryTimer.unref();
    });
  }

  send(event: StatelyInspectionEvent): void {
    if (this.stopped) return;
    const message = JSON.stringify(event, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(message);
      return;
    }
    this.deferred.push(message);
    if (this.deferred.length > this.options.maxDeferredEvents) this.deferred.shift();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.deferred.length = 0;
    const socket = this.socket;
    this.socket = null;
    if (!socket || socket.readyState === WebSocket.CLOSED) return;
    if (socket.readyState !== WebSocket.OPEN) {
      socket.terminate();
      return;
    }
    await new Promise<void>((resolve) => {
      const deadline = setTimeout(() => socket.terminate(), this.options.closeTimeoutMs);
      socket.once('close', () => {
        clearTimeout(deadline);
        resolve();
      });
      // Frames already handed to the socket go out before the close frame.
      socket.close(1000, 'relay stopping');
    });
  }
}

/**
 * Sends every session actor (and its children) to a Stately inspector over a
 * WebSocket: registration, events and snapshots, with keys, audio and the
 * session's sockets taken out (see inspection.ts). Created only when
 * inspection is on; a relay without it creates none of this.
 */
export function createSessionInspector(options: SessionInspectorOptions): SessionInspector {
  const socket = new InspectorSocket({
    url: options.url,
    log: options.log,
    retryMs: options.retryMs ?? 5_000,
    maxDeferredEvents: options.maxDeferredEvents ?? 1_000,
    closeTimeoutMs: options.closeTimeoutMs ?? 1_000,
  });
  // The library converts XState's events to its wire format; the sanitizers run again there as a second line.
  const inspector = createInspector(
    { start: () => socket.start(), stop: () => undefined, send: (event) => socket.send(event) },
    {
      // Only machines have a context; callback and promise actors keep none.
      sanitizeContext: (context) => sanitizeContext(context) ?? (context as Record<string, never>),
      sanitizeEvent,
    },
  );
  inspector.start();
  let stopped = false;
  return {
    inspect(event) {
      if (stopped) return;
      const safe = sanitizeInspectionEvent(event);
      if (safe) inspector.inspect.next?.(safe);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      // The library converts each event on a zero-delay timer: let those queued so far go out first.
      await new Promise<void>((resolve) => setTimeout(resolve, 0));
      await socket.stop();
    },
  };
}
