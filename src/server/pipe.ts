import type WebSocket from 'ws';

/**
 * One direction of a session: frames from a source socket to a sink socket,
 * in order, as received (same Buffer, text frames stay text).
 *
 * A frame may be held back behind a promise (a `response.done` waits for its
 * charge to be written; a `response.create` waits for the balance check);
 * frames behind it queue and leave in order once it settles. Only this
 * session's pipe waits: nothing here blocks the event loop.
 *
 * Backpressure: when the sink has more than `highWaterBytes` unsent, the
 * source is paused and resumed from the sink's write callback. A pipe paused
 * longer than `stallTimeoutMs` has stalled: it abandons its sink (see
 * `abandonSink()`) and reports the stall. A sink that takes nothing must never
 * keep the relay from reading the other side: the upstream's `response.done`,
 * which carries the charge, is behind whatever the client has not taken. The
 * stall timer is set when the source is paused and cleared when it is resumed.
 */
export type Outgoing = Buffer | string;
export type Deferred = Promise<Outgoing | null>;

export interface PipeStats {
  frames: number;
  bytes: number;
  pauses: number;
}

export interface PipeOptions {
  source: WebSocket;
  highWaterBytes: number;
  stallTimeoutMs: number;
  /** Frames and bytes that may wait while there is no sink yet (the upstream is being dialled). */
  maxWaitingFrames: number;
  maxWaitingBytes: number;
  onStall(): void;
  onOverflow(): void;
  /** A deferred frame failed: the pipe stops; the session decides what to tell whom. */
  onDeferredError(error: unknown): void;
  onPause?(): void;
}

/** Every frame leaves as text; one options object, not one per frame. */
const AS_TEXT = { binary: false } as const;

export class FramePipe {
  readonly stats: PipeStats = { frames: 0, bytes: 0, pauses: 0 };
  private sink: WebSocket | null = null;
  private readonly waiting: Array<Outgoing | Deferred> = [];
  private waitingBytes = 0;
  /** The pump is running: it alone takes frames off `waiting`. */
  private pumping = false;
  private stopped = false;
  /** The sink takes nothing more (it stalled or closed); deferred frames still settle. */
  private sinkAbandoned = false;
  private paused = false;
  private stallTimer: NodeJS.Timeout | undefined;
  private readonly flushedWaiters: Array<() => void> = [];

  constructor(private readonly options: PipeOptions) {}

  /** Frames sent before this wait for it, bounded by the waiting limits. */
  attachSink(sink: WebSocket): void {
    this.sink = sink;
    this.pump();
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Whether the source is paused because the sink has too much unsent. */
  get isPaused(): boolean {
    return this.paused;
  }

  /** Forward a frame now, or after whatever is already waiting. */
  push(frame: Outgoing): void {
    if (this.stopped || this.sinkAbandoned) return;
    if (this.waiting.length === 0 && this.sink !== null) {
      this.write(frame);
      return;
    }
    this.enqueue(frame, typeof frame === 'string' ? frame.length : frame.byteLength);
  }

  /** Forward what `deferred` resolves to once it settles, keeping order with later frames. */
  pushDeferred(deferred: Deferred): void {
    if (this.stopped) {
      deferred.catch(() => undefined);
      return;
    }
    this.enqueue(deferred, 0);
    this.pump();
  }

  /** Stop forwarding for good; frames still waiting are dropped. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const item of this.waiting) if (typeof item !== 'string' && !Buffer.isBuffer(item)) item.catch(() => undefined);
    this.waiting.length = 0;
    this.waitingBytes = 0;
    this.resumeSource();
    this.notifyFlushed();
  }

  /**
   * The sink takes nothing more: frames for it are dropped from now on, so
   * memory stays bounded, and the source is read on and never paused again.
   * Deferred frames still settle in order, so a charge that cannot be written
   * is still reported.
   */
  abandonSink(): void {
    if (this.stopped || this.sinkAbandoned) return;
    this.sinkAbandoned = true;
    const deferred = this.waiting.filter((item) => typeof item !== 'string' && !Buffer.isBuffer(item));
    this.waiting.length = 0;
    this.waiting.push(...deferred);
    this.waitingBytes = 0;
    this.resumeSource();
    this.notifyFlushed();
  }

  /** Resolves once nothing is waiting (or the pipe stopped): what the sink is still owed has been handed to it. */
  flushed(): Promise<void> {
    if (this.waiting.length === 0 || this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.flushedWaiters.push(resolve));
  }

  dispose(): void {
    this.stop();
    this.clearStallTimer();
  }

  private enqueue(item: Outgoing | Deferred, size: number): void {
    this.waiting.push(item);
    this.waitingBytes += size;
    if (this.sink === null && (this.waiting.length > this.options.maxWaitingFrames || this.waitingBytes > this.options.maxWaitingBytes)) {
      this.stop();
      this.options.onOverflow();
      return;
    }
    // Frames piling up behind a deferred one count as backpressure too.
    if (this.sink !== null && this.waitingBytes > this.options.highWaterBytes) this.pauseSource();
  }

  private pump(): void {
    if (this.pumping || this.sink === null) return;
    this.pumping = true;
    void this.sendWaiting();
  }

  private async sendWaiting(): Promise<void> {
    try {
      while (!this.stopped && this.waiting.length > 0) {
        const head = this.waiting[0]!;
        if (typeof head === 'string' || Buffer.isBuffer(head)) {
          this.waiting.shift();
          this.waitingBytes -= typeof head === 'string' ? head.length : head.byteLength;
          this.write(head);
          continue;
        }
        let frame: Outgoing | null;
        try {
          frame = await head;
        } catch (error) {
          if (this.stopped) return;
          this.stop();
          this.options.onDeferredError(error);
          return;
        }
        if (this.stopped) return;
        this.waiting.shift();
        if (frame !== null) this.write(frame);
      }
    } finally {
      this.pumping = false;
    }
    if (!this.stopped && this.waitingBytes <= this.options.highWaterBytes && this.sinkHasRoom()) this.resumeSource();
    this.notifyFlushed();
  }

  private write(frame: Outgoing): void {
    const sink = this.sink!;
    if (sink.readyState !== 1 || this.sinkAbandoned) return;
    this.stats.frames++;
    this.stats.bytes += typeof frame === 'string' ? Buffer.byteLength(frame) : frame.byteLength;
    if (sink.bufferedAmount + (typeof frame === 'string' ? frame.length : frame.byteLength) <= this.options.highWaterBytes) {
      sink.send(frame, AS_TEXT);
      return;
    }
    // Over the high-water mark: hold the source until this frame reaches the kernel.
    this.pauseSource();
    sink.send(frame, AS_TEXT, this.sinkDrained);
  }

  private readonly sinkDrained = (): void => {
    if (!this.stopped && this.waitingBytes <= this.options.highWaterBytes && this.sinkHasRoom()) this.resumeSource();
  };

  private sinkHasRoom(): boolean {
    return this.sink === null || this.sink.bufferedAmount <= this.options.highWaterBytes;
  }

  private pauseSource(): void {
    if (this.paused) return;
    this.paused = true;
    this.stats.pauses++;
    this.options.source.pause();
    this.options.onPause?.();
    this.stallTimer = setTimeout(this.stalled, this.options.stallTimeoutMs);
  }

  private readonly stalled = (): void => {
    this.stallTimer = undefined;
    this.abandonSink();
    this.options.onStall();
  };

  private resumeSource(): void {
    if (!this.paused) return;
    this.paused = false;
    this.clearStallTimer();
    this.options.source.resume();
  }

  private clearStallTimer(): void {
    if (this.stallTimer !== undefined) {
      clearTimeout(this.stallTimer);
      this.stallTimer = undefined;
    }
  }

  private notifyFlushed(): void {
    if (this.waiting.length > 0 && !this.stopped) return;
    const waiters = this.flushedWaiters.splice(0);
    for (const resolve of waiters) resolve();
  }
}
