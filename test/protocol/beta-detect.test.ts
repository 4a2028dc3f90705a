import { describe, expect, it } from 'vitest';
import { isBetaClient } from '../../src/protocol/beta/index.js';

type Headers = Record<string, string | string[] | undefined>;

describe('isBetaClient', () => {
  it.each<[string, Headers, string[], boolean]>([
    ['the OpenAI-Beta header', { 'openai-beta': 'realtime=v1' }, [], true],
    ['the header among other betas', { 'openai-beta': 'assistants=v2, realtime=v1' }, [], true],
    ['the header with other capitalisation', { 'OpenAI-Beta': 'realtime=v1' }, [], true],
    ['the header repeated', { 'openai-beta': ['assistants=v2', 'realtime=v1'] }, [], true],
    ['the beta subprotocol', {}, ['realtime', 'openai-insecure-api-key.sk-x', 'openai-beta.realtime-v1'], true],
    ['a GA browser client', {}, ['realtime', 'openai-insecure-api-key.sk-x'], false],
    ['a GA server client', { authorization: 'Bearer sk-x' }, [], false],
    ['another beta only', { 'openai-beta': 'assistants=v2' }, [], false],
    ['a look-alike token', { 'openai-beta': 'realtime=v10' }, [], false],
    ['an absent header value', { 'openai-beta': undefined }, [], false],
  ])('%s → %s', (_name, headers, protocols, expected) => {
    expect(isBetaClient(headers, protocols)).toBe(expected);
  });
});
