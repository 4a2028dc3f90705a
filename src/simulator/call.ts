/**
 * One call and everything it owns: for WebRTC the werift peer and its
 * `oai-events` data channel (a phone call has no media), the sideband
 * WebSockets that joined it, and the one session they all share. Every server
 * event goes to the data channel and to every sideband socket; client events
 * from any of them act on the session. end() releases it all, whoever ends the
 * call (hangup, reject, refer, the peer leaving, a fault, the simulator closing).
 */
import type { RTCDataChannel } from 'werift';
import type { WebSocket } from 'ws';
import { SimulatedSession } from './session.js';
import type { SessionOpening, SessionSettings, SessionSink } from './session.js';
import type { Json } from './shapes.js';
import { WebSocketSink, feedSession } from './socket-sink.js';
import { OpusSilence, closePeerConnection, consentChecksSeen } from './webrtc-peer.js';
import type { AnsweredPeer } from './webrtc-peer.js';

const DATA_CHANNEL_LABEL = 'oai-events';

/**
 * How long a peer may stay `disconnected` before the call ends: long enough
 * for a network blip to heal (ICE returns to `connected`), short enough that
 * a caller that left without hanging up does not keep the call open.
 */
const DISCONNECT_GRACE_MS = 2_000;
/** A connected peer none of whose consent checks moved for this long has left without a word. */
const PEER_SILENCE_MS = 8_000;
/** How often a connected peer's consent checks are looked at. */
const LIVENESS_CHECK_MS = 1_000;

/** How a call ended, as the simulator's owner may ask afterwards. */
export type CallEnding =
  | { by: 'hangup' }
  | { by: 'reject'; statusCode: number }
  | { by: 'refer'; targetUri: string }
  /** The peer left, a fault or the simulator closing ended it. */
  | { by: 'other' };

async function closePeer({ pc }: AnsweredPeer, channel: DataChannelSink | null): Promise<void> {
  try {
    await closePeerConnection(pc, channel?.channel ?? null);
  } catch {
    // Already closed or failed: nothing is left to release.
  }
}

class DataChannelSink implements SessionSink {
  constructor(
    readonly channel: RTCDataChannel,
    private readonly call: SimulatedCall,
  ) {}

  get isOpen(): boolean {
    return this.channel.readyState === 'open';
  }

  send(frame: string): void {
    this.channel.send(frame);
  }

  close(code: number, reason: string): void {
    this.call.end(code, reason);
  }

  drop(): void {
    this.call.end(null, '');
  }

  // A data channel cannot be left unread.
  pauseReading(): void {}
  resumeReading(): void {}
}

/** Everyone listening to the call: its data channel and its sideband sockets. */
class CallSink implements SessionSink {
  channel: DataChannelSink | null = null;
  readonly sidebands = new Map<WebSocket, WebSocketSink>();

  constructor(private readonly call: SimulatedCall) {}

  get isOpen(): boolean {
    if (this.channel?.isOpen) return true;
    for (const sink of this.sidebands.values()) if (sink.isOpen) return true;
    return false;
  }

  send(frame: string): void {
    if (this.channel?.isOpen) this.channel.send(frame);
    for (const sink of this.sidebands.values()) if (sink.isOpen) sink.send(frame);
  }

  close(code: number, reason: string): void {
    this.call.end(code, reason);
  }

  drop(): void {
    this.call.end(null, '');
  }

  pauseReading(): void {
    for (const sink of this.sidebands.values()) sink.pauseReading();
  }

  resumeReading(): void {
    for (const sink of this.sidebands.values()) sink.resumeReading();
  }
}

export interface CallSetup {
  id: string;
  /** The answered WebRTC peer; null for a phone call, which has no media. */
  peer: AnsweredPeer | null;
  settings: SessionSettings;
  opening: SessionOpening;
  /** A WebRTC peer not connected by then ends the call: its client left after the answer. */
  connectTimeoutMs: number;
  /** Told once, however the call ends. */
  onEnded(call: SimulatedCall): void;
}

export class SimulatedCall {
  readonly id: string;
  private readonly peer: AnsweredPeer | null;
  private readonly onEnded: (call: SimulatedCall) => void;
  /**
   * The call's one timer of its own (the audio pump keeps its own): until the
   * peer connects, then while it is disconnected, and while it is connected
   * to look at its consent checks. It ends the call unless the peer is live.
   */
  private peerTimer: NodeJS.Timeout | null = null;
  private peerConnected = false;
  private consentChecks = 0;
  private consentCheckedAt = 0;
  private readonly sink = new CallSink(this);
  private readonly session: SimulatedSession;
  private readonly audio: OpusSilence | null;
  private ended = false;
  private ending: CallEnding = { by: 'other' };
  /** A phone call rings until accepted; a WebRTC call is answered as it is created. */
  private ringing: boolean;
  private peerClosed: Promise<void> = Promise.resolve();

  constructor({ id, peer, settings, opening, connectTimeoutMs, onEnded }: CallSetup) {
    this.id = id;
    this.peer = peer;
    this.onEnded = onEnded;
    this.audio = peer === null ? null : new OpusSilence(peer.audio);
    this.ringing = peer === null;
    this.session = new SimulatedSession(this.sink, settings, opening, (active) => {
      if (active) this.audio?.start();
      else this.audio?.stop();
    });
    if (peer !== null) {
      this.armPeerTimer(connectTimeoutMs);
      this.watchPeer(peer);
    }
  }

  private armPeerTimer(ms: number): void {
    this.clearPeerTimer();
    this.peerTimer = setTimeout(this.callOnPeerTimeout, ms);
  }

  private readonly callOnPeerTimeout = (): void => {
    this.peerTimer = null;
    if (this.peerConnected && this.peerHeardLately()) this.armPeerTimer(LIVENESS_CHECK_MS);
    else this.end(1000, '');
  };

  private peerHeardLately(): boolean {
    const seen = this.peer === null ? 0 : consentChecksSeen(this.peer.pc);
    const now = Date.now();
    if (seen !== this.consentChecks) {
      this.consentChecks = seen;
      this.consentCheckedAt = now;
    }
    return now - this.consentCheckedAt < PEER_SILENCE_MS;
  }

  private clearPeerTimer(): void {
    if (this.peerTimer !== null) clearTimeout(this.peerTimer);
    this.peerTimer = null;
  }

  /** Applies the session config the call was created with; returns why it cannot, or null. */
  configure(update: Json): string | null {
    return this.session.configure(update);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  get isPhoneCall(): boolean {
    return this.peer === null;
  }

  get isRinging(): boolean {
    return this.ringing;
  }

  /** The session config a phone call was accepted with; null while it rings. */
  acceptedWith: Json | null = null;

  /** Answers a ringing phone call with a session config; returns why it cannot, or null. */
  accept(update: Json): string | null {
    const problem = this.session.configure(update);
    if (problem === null) {
      this.ringing = false;
      this.acceptedWith = update;
    }
    return problem;
  }

  private watchPeer({ pc }: AnsweredPeer): void {
    pc.onDataChannel.subscribe((channel) => {
      if (channel.label !== DATA_CHANNEL_LABEL || this.sink.channel !== null || this.ended) return;
      const sink = new DataChannelSink(channel, this);
      this.sink.channel = sink;
      channel.stateChanged.subscribe((state) => {
        if (state === 'open') this.session.greet(sink);
        else if (state === 'closed') this.end(1000, '');
      });
      channel.onMessage.subscribe((data) => {
        this.session.receive(typeof data === 'string' ? Buffer.from(data) : data, typeof data !== 'string');
      });
      if (channel.readyState === 'open') this.session.greet(sink);
    });
    pc.connectionStateChange.subscribe((state) => {
      this.peerConnected = state === 'connected';
      if (state === 'connected') {
        this.consentCheckedAt = Date.now();
        this.armPeerTimer(LIVENESS_CHECK_MS);
      }
      // A peer gone for good ends the call now; one that may come back gets the grace.
      else if (state === 'disconnected') this.armPeerTimer(DISCONNECT_GRACE_MS);
      else if (state === 'closed' || state === 'failed') this.end(1000, '');
    });
  }

  /** Told of each sideband socket that joins (a phone call starts talking once someone listens). */
  onJoined: (() => void) | null = null;

  /** A sideband socket joins: `session.created` first, then every server event of the call. */
  join(socket: WebSocket): void {
    const sink = new WebSocketSink(socket);
    this.sink.sidebands.set(socket, sink);
    feedSession(socket, this.session, () => this.sink.sidebands.delete(socket));
    this.session.greet(sink);
    this.onJoined?.();
  }

  /** A client event from the caller's side, as a phone caller's speech would start a response. */
  act(event: Json): void {
    if (!this.ended) this.session.receive(Buffer.from(JSON.stringify(event)), false);
  }

  /** Cuts every sideband socket without a close frame; the call itself goes on. */
  dropSidebands(): number {
    const sockets = [...this.sink.sidebands.keys()];
    for (const socket of sockets) socket.terminate();
    return sockets.length;
  }

  /**
   * Ends the call: the session stops, the peer connection closes and every
   * sideband socket closes with `code`, or is cut when `code` is null.
   * Idempotent.
   */
  end(code: number | null, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.clearPeerTimer();
    this.session.dispose();
    this.audio?.stop();
    for (const socket of this.sink.sidebands.keys()) {
      if (code === null) socket.terminate();
      else socket.close(code, reason);
    }
    if (this.peer !== null) this.peerClosed = closePeer(this.peer, this.sink.channel);
    this.onEnded(this);
  }

  /** Ends the call on request (hangup, reject, refer): every listener is closed with 1000. */
  finish(ending: CallEnding): void {
    if (this.ended) return;
    this.ending = ending;
    this.end(1000, '');
  }

  get endedBy(): CallEnding {
    return this.ending;
  }

  /** Settles once an ended call's peer connection has released its sockets. */
  get closed(): Promise<void> {
    return this.peerClosed;
  }
}
