/**
 * Latencies in microseconds, in log-spaced buckets 1 % wide: a million
 * samples cost a few kilobytes, merge across processes and still give
 * p99.9 to within 1 %.
 */
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = 2400; // 1.01^2400 µs ≈ 23 s: anything slower is clamped.

export type HistogramJson = { total: number; max: number; sum: number; buckets: Array<[number, number]> };

export class Histogram {
  private readonly counts = new Uint32Array(BUCKETS);
  total = 0;
  max = 0;
  sum = 0;

  record(micros: number): void {
    const value = micros > 1 ? micros : 1;
    let index = Math.ceil(Math.log(value) / LOG_GROWTH);
    if (index >= BUCKETS) index = BUCKETS - 1;
    this.counts[index]!++;
    this.total++;
    this.sum += value;
    if (value > this.max) this.max = value;
  }

  /** The smallest bucket bound under which `fraction` of the samples fall; NaN when empty. */
  quantile(fraction: number): number {
    if (this.total === 0) return Number.NaN;
    const rank = Math.ceil(this.total * fraction);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(GROWTH ** i, this.max);
    }
    return this.max;
  }

  get mean(): number {
    return this.total === 0 ? Number.NaN : this.sum / this.total;
  }

  merge(other: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.total += other.total;
    this.sum += other.sum;
    this.max = Math.max(this.max, other.max);
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
    this.max = 0;
    this.sum = 0;
  }

  toJSON(): HistogramJson {
    const buckets: Array<[number, number]> = [];
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i]! > 0) buckets.push([i, this.counts[i]!]);
    return { total: this.total, max: this.max, sum: this.sum, buckets };
  }

  static fromJSON(json: HistogramJson): Histogram {
    const histogram = new Histogram();
    for (const [index, count] of json.buckets) histogram.counts[index] = count;
    histogram.total = json.total;
    histogram.max = json.max;
    histogram.sum = json.sum;
    return histogram;
  }
}

export interface Percentiles {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

export function percentiles(histogram: Histogram): Percentiles {
  return {
    count: histogram.total,
    p50: histogram.quantile(0.5),
    p99: histogram.quantile(0.99),
    p999: histogram.quantile(0.999),
    max: histogram.max,
  };
}
