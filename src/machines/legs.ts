import type { SessionEvent, SessionOutcome } from './session.js';
import type { SideClose } from './close-plan.js';
import type { SessionSummary } from '../server/ports.js';

/** How a leg tells the machine a fact: each invoked actor passes its own `sendBack`. */
export type Report = (event: SessionEvent) => void;

/** Either leg can be closed the way the close plan says. */
export interface ClosableLeg {
  /**
   * Tell the peer `how` (null: just make sure the socket is gone); `closed`
   * runs once the socket is closed, with the code it closed with (null when it
   * already was). Returns the disposer, which clears the leg's close timer.
   */
  close(how: SideClose | null, closed: (code: number | null) => void): () => void;
}

/**
 * The caller's side of a session. A WebSocket today; a leg whose client is a
 * WebRTC call (its events read over the upstream's sideband socket) drives the
 * same machine and the same bill.
 */
export interface ClientLeg extends ClosableLeg {
  /** Forward the client's frames (queued until the upstream answers) and report the facts they carry. Returns the disposer. */
  read(report: Report): () => void;
  /** The session is winding down: nothing more goes upstream from the client. */
  stopForwarding(): void;
}

/** The model's side of a session. */
export interface UpstreamLeg extends ClosableLeg {
  /** Dial the upstream; resolve once it has sent its first frame. Abort on `signal`. */
  dial(signal: AbortSignal): Promise<void>;
  /** Forward the upstream's frames and report the lifecycle facts they carry. Returns the disposer. */
  read(report: Report): () => void;
  /** Ask the upstream to cancel the response in flight. */
  cancelResponse(): void;
}

/** What a session machine needs from the world; the machine never touches a socket itself. */
export interface SessionPorts {
  client: ClientLeg;
  upstream: UpstreamLeg;
  /** Ping both peers, watch for idleness and stalls. Returns the disposer. */
  keepAlive(report: Report): () => void;
  /** Wait for the charges still being written, then write the settlement (or hand it to the backlog). Never rejects. */
  settle(outcome: SessionOutcome): Promise<SessionSummary>;
}
