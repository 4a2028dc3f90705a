import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/settings.js';
import { traceSettings } from '../../src/observability/trace-settings.js';

const ENDPOINT = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' };

describe('the OTEL_* variables', () => {
  it('make no traces without an endpoint, with the SDK disabled, or with the exporter set to none', () => {
    expect(traceSettings({})).toBeNull();
    expect(traceSettings({ OTEL_SERVICE_NAME: 'relay', OTEL_TRACES_SAMPLER: 'always_on' })).toBeNull();
    expect(traceSettings({ ...ENDPOINT, OTEL_SDK_DISABLED: 'true' })).toBeNull();
    expect(traceSettings({ ...ENDPOINT, OTEL_TRACES_EXPORTER: 'none' })).toBeNull();
    expect(traceSettings({ ...ENDPOINT, OTEL_SDK_DISABLED: 'false' })).not.toBeNull();
  });

  it('take the traces endpoint over the general one, and show only its origin', () => {
    const settings = traceSettings({ ...ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://collector.example:4318/v1/traces?token=secret' });
    expect(settings?.endpointOrigin).toBe('https://collector.example:4318');
    expect(traceSettings({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' })?.endpointOrigin).toBe('http://127.0.0.1:4318');
  });

  it('default to sampling every session, and read the ratio samplers and batch sizes', () => {
    expect(traceSettings(ENDPOINT)).toMatchObject({ sampler: 'parentbased_always_on', samplerRatio: 1, batch: { scheduledDelayMillis: undefined } });
    expect(traceSettings({ ...ENDPOINT, OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25', OTEL_BSP_SCHEDULE_DELAY: '250', OTEL_BSP_MAX_QUEUE_SIZE: '100' })).toMatchObject({
      sampler: 'traceidratio',
      samplerRatio: 0.25,
      batch: { scheduledDelayMillis: 250, maxQueueSize: 100 },
    });
  });

  it.each([
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }, 'OTEL_EXPORTER_OTLP_ENDPOINT'],
    [{ ...ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'],
    [{ ...ENDPOINT, OTEL_TRACES_EXPORTER: 'zipkin' }, 'OTEL_TRACES_EXPORTER'],
    [{ ...ENDPOINT, OTEL_TRACES_SAMPLER_ARG: 'half' }, 'OTEL_TRACES_SAMPLER_ARG'],
    [{ ...ENDPOINT, OTEL_BSP_SCHEDULE_DELAY: '-5' }, 'OTEL_BSP_SCHEDULE_DELAY'],
  ])('refuse a wrong value, naming the variable (%o)', (env, variable) => {
    expect(() => traceSettings(env)).toThrow(ConfigError);
    expect(() => traceSettings(env)).toThrow(new RegExp(`^${variable}:`));
  });
});
