import { appendFileSync, existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import type { ChargeInput, Ledger, SettlementInput } from './ledger/index.js';

/**
 * Ledger writes that could not be made when they were due. They are retried
 * until the ledger answers, and written to a spool file when the process
 * stops, to be replayed on the next start. Every write is idempotent in the
 * ledger (charges are unique per item, settlements per session), so a
 * replay never counts anything twice.
 */
export type PendingWrite = { kind: 'charge'; charge: ChargeInput } | { kind: 'settlement'; settlement: SettlementInput };

interface Spooled {
  kind: 'charge' | 'settlement';
  data: Record<string, unknown>;
}

function toSpool(write: PendingWrite): Spooled {
  if (write.kind === 'charge') return { kind: 'charge', data: { ...write.charge, costNano: write.charge.costNano.toString() } };
  return { kind: 'settlement', data: { ...write.settlement, endedAt: write.settlement.endedAt.toISOString() } };
}

function fromSpool(entry: Spooled): PendingWrite {
  if (entry.kind === 'charge') {
    const data = entry.data as unknown as ChargeInput & { costNano: string };
    return { kind: 'charge', charge: { ...data, costNano: BigInt(data.costNano) } };
  }
  const data = entry.data as unknown as SettlementInput & { endedAt: string };
  return { kind: 'settlement', settlement: { ...data, endedAt: new Date(data.endedAt) } };
}

export class WriteBacklog {
  private readonly pending: PendingWrite[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly ledger: Ledger,
    private readonly spoolPath: string | null,
    private readonly retryMs = 1_000,
    private readonly onWritten: (write: PendingWrite) => void = () => undefined,
  ) {}

  get size(): number {
    return this.pending.length;
  }

  add(write: PendingWrite): void {
    this.pending.push(write);
    this.schedule();
  }

  /** Tries every pending write in order; keeps what still fails. */
  flush(): Promise<void> {
    this.flushing ??= this.flushOnce().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    while (this.pending.length > 0) {
      const write = this.pending[0]!;
      try {
        if (write.kind === 'charge') await this.ledger.recordCharge(write.charge);
        else await this.ledger.settleSession(write.settlement);
      } catch {
        this.schedule();
        return;
      }
      this.pending.shift();
      this.onWritten(write);
    }
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.retryMs);
    this.timer.unref();
  }

  /** Replays writes a previous process left in the spool. */
  async replaySpool(): Promise<number> {
    if (!this.spoolPath || !existsSync(this.spoolPath)) return 0;
    const claimed = `${this.spoolPath}.replaying`;
    renameSync(this.spoolPath, claimed);
    const entries = readFileSync(claimed, 'utf8')
      .split('\n')
      .filter((line) => line.trim().length > 0)
      .map((line) => fromSpool(JSON.parse(line) as Spooled));
    this.pending.unshift(...entries);
    await this.flush();
    // Still pending writes stay claimed on disk until they are written: a replay is idempotent.
    if (this.pending.length === 0) rmSync(claimed);
    return entries.length;
  }

  /** Stops retrying; whatever is still pending goes to the spool file. */
  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0 || !this.spoolPath) return;
    appendFileSync(this.spoolPath, this.pending.map((write) => `${JSON.stringify(toSpool(write))}\n`).join(''));
    this.pending.length = 0;
  }
}
