import { OpenAIRealtimeWebSocket, RealtimeAgent, RealtimeSession, tool, type RealtimeItem } from '@openai/agents-realtime';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { FUNCTION_CALL_ARGUMENTS } from '../../src/simulator/index.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

/*
 * In Node the Agents SDK's WebSocket transport uses the `ws` package (its
 * `_shims` export resolves to shims-node) and sends `Authorization: Bearer`;
 * its `url` option is used as given, so plain ws:// to the relay works.
 */

let stack: LedgerTestRelay | undefined;
let session: RealtimeSession | undefined;
afterEach(async () => {
  session?.close();
  session = undefined;
  await stack?.close();
  stack = undefined;
});

/** Resolves after the agent has ended `turns` turns. */
function agentTurns(s: RealtimeSession, turns: number, timeoutMs = 5_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let ended = 0;
    const timer = setTimeout(() => reject(new Error(`the agent ended ${ended} of ${turns} turns`)), timeoutMs);
    s.on('agent_end', () => {
      if (++ended === turns) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function summarize(history: RealtimeItem[]) {
  return history.map((item) =>
    item.type === 'message'
      ? { type: item.type, role: item.role, text: item.content.map((c) => ('text' in c ? c.text : 'transcript' in c ? c.transcript : '')).join('') }
      : item.type === 'function_call'
        ? { type: item.type, name: item.name, arguments: item.arguments, output: item.output }
        : { type: item.type },
  );
}

async function open(agent: RealtimeAgent): Promise<{ s: RealtimeSession; errors: unknown[] }> {
  const transport = new OpenAIRealtimeWebSocket({ url: stack!.realtimeUrl() });
  const s = new RealtimeSession(agent, { transport, model: 'gpt-realtime', config: { outputModalities: ['text'] } });
  session = s;
  const errors: unknown[] = [];
  s.on('error', (error) => errors.push(error));
  await s.connect({ apiKey: stack!.key });
  return { s, errors };
}

describe('the Agents SDK (RealtimeSession over OpenAIRealtimeWebSocket) pointed at the relay', () => {
  it('completes a text turn', async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    const { s, errors } = await open(new RealtimeAgent({ name: 'greeter', instructions: 'Greet briefly.' }));
    const ended = agentTurns(s, 1);
    s.sendMessage('Hello?');
    await ended;
    expect(summarize(s.history)).toEqual([
      { type: 'message', role: 'user', text: 'Hello?' },
      { type: 'message', role: 'assistant', text: 'Hello from the simulator' },
    ]);
    expect(errors).toEqual([]);
    s.close();
    await stack.idle();
    expect(await stack.ledger.usage({ key: 'demo' })).toHaveLength(1);
  });

  it('runs a function tool and answers with its result', async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    const calls: unknown[] = [];
    const lookupOrder = tool({
      name: 'lookup_order',
      description: 'Looks up the status of the caller\'s order.',
      parameters: z.object({ ok: z.boolean() }),
      execute: async (input) => {
        calls.push(input);
        return 'order 42 has shipped';
      },
    });
    const { s, errors } = await open(new RealtimeAgent({ name: 'support', instructions: 'Use your tools.', tools: [lookupOrder] }));
    // One turn ends with the tool call, the next with the answer the tool's output asked for.
    const ended = agentTurns(s, 2);
    s.sendMessage('Where is my order?');
    await ended;
    expect(calls).toEqual([JSON.parse(FUNCTION_CALL_ARGUMENTS)]);
    expect(summarize(s.history)).toEqual([
      { type: 'message', role: 'user', text: 'Where is my order?' },
      { type: 'function_call', name: 'lookup_order', arguments: FUNCTION_CALL_ARGUMENTS, output: 'order 42 has shipped' },
      { type: 'message', role: 'assistant', text: 'Hello from the simulator' },
    ]);
    expect(errors).toEqual([]);
    s.close();
    await stack.idle();
    const charges = await stack.ledger.usage({ key: 'demo' });
    expect(charges).toHaveLength(2);
    expect(stack.settlements()[0]).toMatchObject({ chargeCount: 2, totalNano: charges[0]!.costNano + charges[1]!.costNano });
  });
});
