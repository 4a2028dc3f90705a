import { afterEach, describe, expect, it } from 'vitest';
import { builtInPrices } from '../../src/billing/prices.js';
import { createRelayMetrics } from '../../src/observability/metrics.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { metricValue, parseMetrics, scrape, type Sample } from './prom-text.js';

let stack: LedgerTestRelay | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

/** A usage object as OpenAI reports it; 1000 text tokens in and 500 out cost 0.004 + 0.008 USD at gpt-realtime prices. */
function textUsage(totalTokens = 1500) {
  return {
    total_tokens: totalTokens,
    input_tokens: 1000,
    output_tokens: 500,
    input_token_details: { text_tokens: 1000, audio_tokens: 0, image_tokens: 0, cached_tokens: 0, cached_tokens_details: { text_tokens: 0, audio_tokens: 0, image_tokens: 0 } },
    output_token_details: { text_tokens: 500, audio_tokens: 0 },
  };
}

function delta(before: Sample[], after: Sample[], name: string, labels: Record<string, string> = {}): number {
  return metricValue(after, name, labels) - metricValue(before, name, labels);
}

describe('/metrics', () => {
  it('counts a session once it ends: reason, duration, dial, frames and bytes each way, charges, spend and anomalies', async () => {
    stack = await startTestRelay({ builtInSimulator: true });
    const before = await scrape(stack.httpUrl);
    const client = stack.connect();
    await client.next('session.created');

    const live = await scrape(stack.httpUrl);
    expect(metricValue(live, 'relay_sessions_active', { state: 'relaying' })).toBe(1);

    const sent: string[] = [];
    const send = (event: object) => {
      const text = JSON.stringify(event);
      sent.push(text);
      client.socket.send(text);
    };
    const audio = Buffer.alloc(4800, 7).toString('base64');
    for (let i = 0; i < 25; i++) send({ type: 'input_audio_buffer.append', audio });
    send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(textUsage()) } } });
    await client.next('response.done');
    // total_tokens ≠ input + output: billed by the conservative rule and counted as an anomaly.
    send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(textUsage(1499)) } } });
    await client.until(() => client.count('response.done') === 2, 'the second response.done');
    client.close();
    await client.closedWith();
    await stack.idle();

    const after = await scrape(stack.httpUrl);
    expect(delta(before, after, 'relay_sessions_ended_total', { reason: 'client_closed' })).toBe(1);
    expect(delta(before, after, 'relay_sessions_ended_total')).toBe(1);
    expect(delta(before, after, 'relay_session_duration_seconds_count')).toBe(1);
    expect(delta(before, after, 'relay_upstream_dial_seconds_count', { upstream: 'simulator' })).toBe(1);
    expect(delta(before, after, 'relay_upstream_dial_failures_total')).toBe(0);
    expect(delta(before, after, 'relay_frames_total', { direction: 'client_to_upstream' })).toBe(sent.length);
    expect(delta(before, after, 'relay_bytes_total', { direction: 'client_to_upstream' })).toBe(sent.reduce((n, text) => n + Buffer.byteLength(text), 0));
    expect(delta(before, after, 'relay_frames_total', { direction: 'upstream_to_client' })).toBe(client.raw.length);
    expect(delta(before, after, 'relay_bytes_total', { direction: 'upstream_to_client' })).toBe(client.raw.reduce((n, frame) => n + frame.byteLength, 0));
    expect(delta(before, after, 'relay_billing_write_seconds_count')).toBe(2);
    expect(delta(before, after, 'relay_billing_write_failures_total')).toBe(0);
    expect(delta(before, after, 'relay_usage_anomalies_total', { anomaly: 'total_mismatch' })).toBe(1);
    expect(delta(before, after, 'relay_usage_anomalies_total')).toBe(1);

    // Spend is what the ledger charged, to the nano-dollar.
    const [settlement] = stack.settlements();
    expect(settlement!.totalNano).toBeGreaterThanOrEqual(2n * 12_000_000n);
    expect(delta(before, after, 'relay_spend_usd_total', { model: 'gpt-realtime' })).toBeCloseTo(Number(settlement!.totalNano) / 1e9, 9);
    for (const state of ['connecting', 'relaying', 'draining', 'closed']) expect(metricValue(after, 'relay_sessions_active', { state })).toBe(0);
    // prom-client's process metrics come along.
    expect(after.some((s) => s.name === 'process_cpu_user_seconds_total')).toBe(true);
    expect(after.some((s) => s.name === 'nodejs_heap_size_used_bytes')).toBe(true);
  });

  it('counts an upstream that refuses the dial, by upstream and code', async () => {
    stack = await startTestRelay({ builtInSimulator: true });
    const before = await scrape(stack.httpUrl);
    stack.sim!.queueHandshakeFault({ kind: 'refuse', status: 500 });
    const client = stack.connect();
    await client.closedWith();
    await stack.idle();
    const after = await scrape(stack.httpUrl);
    const failures = after.filter((s) => s.name === 'relay_upstream_dial_failures_total' && s.labels.upstream === 'simulator' && s.value > 0);
    expect(failures).toHaveLength(1);
    const code = failures[0]!.labels.code!;
    expect(delta(before, after, 'relay_upstream_dial_failures_total', { upstream: 'simulator', code })).toBe(1);
    expect(delta(before, after, 'relay_sessions_ended_total', { reason: `dial_failed:${code}` })).toBe(1);
    expect(delta(before, after, 'relay_upstream_dial_seconds_count')).toBe(0);
  });

  it('counts a backpressure pause and the stall that ends the session', async () => {
    stack = await startTestRelay({ builtInSimulator: true, settings: { highWaterBytes: 256 * 1024, stallTimeoutMs: 300, closeTimeoutMs: 500 } });
    const before = await scrape(stack.httpUrl);
    const client = stack.connect();
    await client.next('session.created');
    // The upstream stops reading: the relay's unsent bytes to it grow until it pauses the client.
    client.send({ type: 'simulator.fault', fault: { kind: 'slow_reader' } });
    const frame = JSON.stringify({ type: 'input_audio_buffer.append', audio: Buffer.alloc(48 * 1024, 1).toString('base64') });
    for (let i = 0; i < 400; i++) client.socket.send(frame);
    expect((await client.closedWith(15_000)).code).toBe(1011);
    await stack.idle();
    const after = await scrape(stack.httpUrl);
    expect(delta(before, after, 'relay_backpressure_pauses_total')).toBe(1);
    expect(delta(before, after, 'relay_sessions_ended_total', { reason: 'cancelled:backpressure_stall' })).toBe(1);
  });

  it('keeps each relay’s metrics in a registry of its own', async () => {
    const one = createRelayMetrics({ defaultMetrics: false });
    const two = createRelayMetrics({ defaultMetrics: false });
    one.meterHooks.charged('gpt-realtime', 1_500_000_001n, 3);
    const first = parseMetrics(await one.text());
    const second = parseMetrics(await two.text());
    // Summed in nano-USD; only the export is a float.
    expect(metricValue(first, 'relay_spend_usd_total', { model: 'gpt-realtime' })).toBe(1.500000001);
    expect(metricValue(second, 'relay_spend_usd_total')).toBe(0);
    expect(first.some((s) => s.name.startsWith('process_'))).toBe(false);
  });

  it('adds the spend of every dated snapshot of a model to one series, named after its priced family', async () => {
    const metrics = createRelayMetrics({ defaultMetrics: false });
    metrics.meterHooks.charged('gpt-realtime-2025-08-28', 1_000_000_000n, 1);
    metrics.meterHooks.charged('gpt-realtime-2026-01-15', 500_000_000n, 1);
    metrics.meterHooks.charged('gpt-realtime', 250_000_000n, 1);
    metrics.meterHooks.charged('gpt-realtime-mini-2025-10-06', 1_000n, 1);
    const spend = parseMetrics(await metrics.text()).filter((s) => s.name === 'relay_spend_usd_total');
    expect(spend.map((s) => s.labels['model']).sort()).toEqual(['gpt-realtime', 'gpt-realtime-mini']);
    expect(metricValue(spend, 'relay_spend_usd_total', { model: 'gpt-realtime' })).toBe(1.75);
  });

  it('labels spend by the families of the price table the relay was given', async () => {
    const prices = { ...builtInPrices, realtime: { ...builtInPrices.realtime, 'house-model': builtInPrices.realtime['gpt-realtime']! } };
    const metrics = createRelayMetrics({ defaultMetrics: false, prices });
    metrics.meterHooks.charged('house-model-2026-02-01', 1_000n, 1);
    expect(metricValue(parseMetrics(await metrics.text()), 'relay_spend_usd_total', { model: 'house-model' })).toBe(0.000001);
  });
});
