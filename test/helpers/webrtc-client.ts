/**
 * A WebRTC Realtime client in Node, as a browser would be: a werift peer that
 * offers one audio track and creates the `oai-events` data channel, posts its
 * offer to a calls URL (`application/sdp`, or multipart with a session
 * config) and speaks JSON events over the channel.
 */
import { RTCPeerConnection } from 'werift';
import type { RTCDataChannel } from 'werift';
import { closePeerConnection } from '../../src/simulator/webrtc-peer.js';
import type { ReceivedEvent } from './client.js';
import { Arrivals } from './wait.js';

export interface WebRtcCallOptions {
  /** Sent as `Authorization: Bearer <key>`; omitted when undefined. */
  key?: string;
  /** `sdp` (default): the offer as an application/sdp body; `multipart`: fields `sdp` and `session`. */
  shape?: 'sdp' | 'multipart';
  /** The `session` field of a multipart offer. */
  session?: Record<string, unknown>;
  /** How long to wait for the data channel to open. Default 10 s. */
  openTimeoutMs?: number;
}

export interface WebRtcCall {
  /** The last path segment of Location, as the Agents SDK reads it. */
  callId: string;
  location: string;
  pc: RTCPeerConnection;
  /** Every event received on `oai-events`, in order. */
  events: ReceivedEvent[];
  send(event: Record<string, unknown>): void;
  /** Resolves with the first received event of `type` (after `from`, an index into events) that `match` accepts. */
  waitFor(type: string, opts?: { match?: (event: ReceivedEvent) => boolean; from?: number; timeoutMs?: number }): Promise<ReceivedEvent>;
  /** Resolves once the data channel has closed (the call ended). */
  waitForClose(timeoutMs?: number): Promise<void>;
  readonly channelState: string;
  /** RTP packets received on the audio track so far. */
  readonly audioPackets: number;
  close(): Promise<void>;
}

/** The call endpoint's answer when it is not a 201. */
export class CallRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`call refused with ${status}: ${body}`);
  }
}

async function gathered(pc: RTCPeerConnection): Promise<void> {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise<void>((resolve) => {
    const { unSubscribe } = pc.iceGatheringStateChange.subscribe((state) => {
      if (state !== 'complete') return;
      unSubscribe();
      resolve();
    });
  });
}

/** Posts `offerSdp` as a browser or an app server would; the raw response. */
export function postOffer(url: string, offerSdp: string, options: Pick<WebRtcCallOptions, 'key' | 'shape' | 'session'> = {}): Promise<Response> {
  const headers: Record<string, string> = {};
  if (options.key !== undefined) headers.Authorization = `Bearer ${options.key}`;
  if (options.shape === 'multipart') {
    const form = new FormData();
    form.set('sdp', offerSdp);
    form.set('session', JSON.stringify(options.session ?? { type: 'realtime' }));
    return fetch(url, { method: 'POST', headers, body: form });
  }
  return fetch(url, { method: 'POST', headers: { ...headers, 'Content-Type': 'application/sdp' }, body: offerSdp });
}

/** Opens a call at `url` (e.g. `http://host:port/v1/realtime/calls?model=…`); throws CallRefused on a non-201. */
export async function openWebRtcCall(url: string, options: WebRtcCallOptions = {}): Promise<WebRtcCall> {
  // One transport for audio and data: werift leaves a bundled-away transport's sockets open after close().
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceAdditionalHostAddresses: ['127.0.0.1'], iceUseIpv6: false });
  const events: ReceivedEvent[] = [];
  let channelClosed = false;
  let peerGone = false;
  let audioPackets = 0;
  const arrivals = new Arrivals(() => (channelClosed ? 'the data channel closed' : peerGone ? 'the peer connection ended' : null));
  let channel: RTCDataChannel;
  try {
    const audio = pc.addTransceiver('audio', { direction: 'sendrecv' });
    audio.onTrack.subscribe((track) => {
      track.onReceiveRtp.subscribe(() => audioPackets++);
    });
    channel = pc.createDataChannel('oai-events');
    channel.onMessage.subscribe((data) => {
      const text = data.toString();
      try {
        events.push(JSON.parse(text) as ReceivedEvent);
      } catch {
        events.push({ type: '<unparseable>', text });
      }
      arrivals.check();
    });
    channel.stateChanged.subscribe((state) => {
      if (state === 'closed') channelClosed = true;
      arrivals.check();
    });
    // A far end that closed its connection without resetting the channel is heard only here.
    pc.connectionStateChange.subscribe((state) => {
      if (state === 'failed' || state === 'closed' || state === 'disconnected') peerGone = true;
      arrivals.check();
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const res = await postOffer(url, pc.localDescription!.sdp, options);
    const body = await res.text();
    if (res.status !== 201) throw new CallRefused(res.status, body);
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    const location = res.headers.get('location') ?? '';
    const seen = () => `saw ${events.map((e) => e.type).join(', ') || 'nothing'}; channel ${channel.readyState}`;
    await arrivals.until(() => (channel.readyState === 'open' ? true : undefined), 'the oai-events channel to open', options.openTimeoutMs ?? 10_000, seen);
    return {
      callId: location.split('/').at(-1) ?? '',
      location,
      pc,
      events,
      send(event) {
        channel.send(JSON.stringify(event));
      },
      waitFor(type, opts = {}) {
        const from = opts.from ?? 0;
        const find = () => events.slice(from).find((e) => e.type === type && (opts.match?.(e) ?? true));
        return arrivals.until(find, `a ${type} event`, opts.timeoutMs ?? 5_000, seen);
      },
      async waitForClose(timeoutMs = 5_000) {
        // Arrivals rejects once the channel has closed, which is what is awaited here.
        await arrivals.until(() => undefined, 'the data channel to close', timeoutMs, seen).catch((err: Error) => {
          if (!channelClosed && !peerGone) throw err;
        });
      },
      get channelState() {
        return channel.readyState;
      },
      get audioPackets() {
        return audioPackets;
      },
      /** Ends the call as a browser's close() does: the far end hears it. */
      async close() {
        await closePeerConnection(pc, channel);
      },
    };
  } catch (err) {
    await pc.close().catch(() => {});
    throw err;
  }
}
