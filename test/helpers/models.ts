/**
 * Realtime model names as clients send them, and the family whose published
 * price applies: every family by its own name (some are prefixes of others)
 * and a dated snapshot of each family that has one.
 */
export const REALTIME_MODEL_FAMILIES: Array<[model: string, family: string]> = [
  ['gpt-realtime', 'gpt-realtime'],
  ['gpt-realtime-2', 'gpt-realtime-2'],
  ['gpt-realtime-2.1', 'gpt-realtime-2.1'],
  ['gpt-realtime-mini', 'gpt-realtime-mini'],
  ['gpt-4o-realtime-preview', 'gpt-4o-realtime-preview'],
  ['gpt-4o-mini-realtime-preview', 'gpt-4o-mini-realtime-preview'],
  ['gpt-realtime-2025-08-28', 'gpt-realtime'],
  ['gpt-realtime-mini-2025-10-06', 'gpt-realtime-mini'],
  ['gpt-4o-realtime-preview-2025-06-03', 'gpt-4o-realtime-preview'],
  ['gpt-4o-mini-realtime-preview-2024-12-17', 'gpt-4o-mini-realtime-preview'],
];
