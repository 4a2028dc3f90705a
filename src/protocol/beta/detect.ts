/**
 * Beta clients announce themselves with `OpenAI-Beta: realtime=v1` (server
 * SDKs) or, from browsers that cannot set headers, the subprotocol
 * `openai-beta.realtime-v1`.
 */
const BETA_HEADER = 'openai-beta';
const BETA_HEADER_TOKEN = 'realtime=v1';
const BETA_PROTOCOL = 'openai-beta.realtime-v1';

function headerValues(headers: Record<string, string | string[] | undefined>, name: string): string[] {
  const values: string[] = [];
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name || value === undefined) continue;
    values.push(...(Array.isArray(value) ? value : [value]));
  }
  return values;
}

export function isBetaClient(
  headers: Record<string, string | string[] | undefined>,
  offeredProtocols: string[],
): boolean {
  // The header may list several betas: `OpenAI-Beta: assistants=v2, realtime=v1`.
  const announced = headerValues(headers, BETA_HEADER).some((value) =>
    value.split(',').some((token) => token.trim().toLowerCase() === BETA_HEADER_TOKEN),
  );
  return announced || offeredProtocols.some((protocol) => protocol.trim() === BETA_PROTOCOL);
}
