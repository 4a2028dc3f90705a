/**
 * The simulator's side of a WebRTC call, as OpenAI's answers one: a werift
 * peer with one send-and-receive audio track, answering an offer with every
 * ICE candidate in the SDP (no trickle), and Opus silence on the track while
 * a response plays.
 */
import { RTCPeerConnection, RtpHeader, RtpPacket } from 'werift';
import type { RTCDataChannel, RTCRtpTransceiver } from 'werift';

/** 20 ms of Opus silence (one SILK frame), the smallest packet a browser plays. */
const OPUS_SILENCE = Buffer.from([0xf8, 0xff, 0xfe]);
const FRAME_MS = 20;
/** Opus RTP runs on a 48 kHz clock whatever the audio's rate. */
const SAMPLES_PER_FRAME = 960;

export interface AnsweredPeer {
  pc: RTCPeerConnection;
  audio: RTCRtpTransceiver;
  answerSdp: string;
}

/** A plausibly whole SDP offer: werift accepts fragments it cannot then negotiate. */
export function looksLikeSdpOffer(sdp: string): boolean {
  return /^v=0\r?\n/.test(sdp) && /\r?\nm=(audio|application) /.test(sdp);
}

/**
 * Answers `offerSdp`. Loopback is offered as a host address, so a peer on a
 * host without other interfaces connects. Throws (with the peer closed) when
 * the offer cannot be applied.
 */
export async function answerOffer(offerSdp: string): Promise<AnsweredPeer> {
  const pc = new RTCPeerConnection({ iceAdditionalHostAddresses: ['127.0.0.1'], iceUseIpv6: false });
  try {
    // Added before the offer is applied, or the answer would only receive.
    const audio = pc.addTransceiver('audio', { direction: 'sendrecv' });
    await pc.setRemoteDescription({ type: 'offer', sdp: offerSdp });
    await pc.setLocalDescription(await pc.createAnswer());
    if (pc.iceGatheringState !== 'complete') {
      await new Promise<void>((resolve) => {
        const { unSubscribe } = pc.iceGatheringStateChange.subscribe((state) => {
          if (state !== 'complete') return;
          unSubscribe();
          resolve();
        });
      });
    }
    const answerSdp = pc.localDescription?.sdp;
    if (answerSdp === undefined) throw new Error('no local description');
    return { pc, audio, answerSdp };
  } catch (err) {
    await pc.close().catch(() => {});
    throw err;
  }
}

/**
 * Consent checks (RFC 7675) seen on the peer's selected candidate pairs, both
 * ways: on a live connection each side sends one every 4–6 s, so a count that
 * stops moving means the far end is gone. werift itself only gives up 30 s
 * after the last answer, and never reports `disconnected`.
 */
export function consentChecksSeen(pc: RTCPeerConnection): number {
  let seen = 0;
  for (const transport of pc.iceTransports) {
    const pair = transport.connection.nominated;
    if (pair) seen += pair.requestsReceived + pair.responsesReceived;
  }
  return seen;
}

/** How long a closing data channel may wait for the far end's acknowledgement. */
const CHANNEL_CLOSE_BOUND_MS = 1_000;

/**
 * Closes a peer so that the far end hears it: werift's close() ends DTLS
 * before SCTP and so tells the far end nothing, but a data channel's close
 * (an SCTP stream reset) does, once acknowledged. The wait is bounded, for a
 * far end that is already gone.
 */
export async function closePeerConnection(pc: RTCPeerConnection, channel: RTCDataChannel | null): Promise<void> {
  if (channel !== null && channel.readyState === 'open') {
    await new Promise<void>((resolve) => {
      const bound = setTimeout(done, CHANNEL_CLOSE_BOUND_MS);
      const { unSubscribe } = channel.stateChanged.subscribe((state) => {
        if (state === 'closed') done();
      });
      function done(): void {
        clearTimeout(bound);
        unSubscribe();
        resolve();
      }
      channel.close();
    });
  }
  await pc.close();
}

/** Sends Opus silence frames every 20 ms between start() and stop(); the one timer of a call's audio. */
export class OpusSilence {
  private timer: NodeJS.Timeout | null = null;
  private sequenceNumber = 0;
  private timestamp = 0;
  private startOfTalkspurt = false;

  constructor(private readonly audio: RTCRtpTransceiver) {}

  start(): void {
    if (this.timer !== null) return;
    this.startOfTalkspurt = true;
    this.timer = setInterval(this.sendFrame, FRAME_MS);
  }

  stop(): void {
    if (this.timer === null) return;
    clearInterval(this.timer);
    this.timer = null;
  }

  private readonly sendFrame = (): void => {
    this.sequenceNumber = (this.sequenceNumber + 1) & 0xffff;
    this.timestamp = (this.timestamp + SAMPLES_PER_FRAME) >>> 0;
    const header = new RtpHeader({ sequenceNumber: this.sequenceNumber, timestamp: this.timestamp, marker: this.startOfTalkspurt });
    this.startOfTalkspurt = false;
    // The sender stamps its own SSRC and payload type; it drops frames until DTLS is up.
    this.audio.sender.sendRtp(new RtpPacket(header, OPUS_SILENCE)).catch(() => {});
  };
}
