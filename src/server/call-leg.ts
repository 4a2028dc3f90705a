import type { SideClose } from '../machines/close-plan.js';
import type { ClientLeg, Report } from '../machines/legs.js';
import type { UpstreamCall } from './upstream-call.js';

function ignoreReport(): void {}

/**
 * A WebRTC call's caller side. Its media and events go straight between the
 * caller and the upstream, so there is nothing to forward; what the relay
 * knows of the caller is that it hung up (through the relay's hangup
 * endpoint). Closing it hangs the call up upstream, once, whatever ended the
 * session: no call outlives its metering.
 */
export class CallClientLeg implements ClientLeg {
  private report: Report = ignoreReport;
  private hungUp = false;

  constructor(
    private readonly call: UpstreamCall,
    private readonly closeTimeoutMs: number,
  ) {}

  /** The caller asked the relay to hang up. */
  hangUp(): void {
    if (this.hungUp) return;
    this.hungUp = true;
    this.report({ type: 'CLIENT_CLOSED', code: 1000, reason: 'hangup' });
  }

  read(report: Report): () => void {
    const leg = this;
    this.report = report;
    return function stopCallRead() {
      if (leg.report === report) leg.report = ignoreReport;
    };
  }

  stopForwarding(): void {
    // Nothing passes through the relay.
  }

  close(_how: SideClose | null, closed: (code: number | null) => void): () => void {
    let disposed = false;
    void this.call.hangUp(this.closeTimeoutMs).then(() => {
      if (!disposed) closed(null);
    });
    return function stopCallClose() {
      disposed = true;
    };
  }
}
