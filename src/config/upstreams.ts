import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { Upstream } from '../server/upstream.js';
import { ConfigError } from './settings.js';

/**
 * The upstreams file (RELAY_UPSTREAMS_FILE):
 *
 *   {
 *     "upstreams": [
 *       { "name": "azure-east", "kind": "azure", "baseUrl": "https://res.openai.azure.com",
 *         "apiKeyEnv": "AZURE_OPENAI_API_KEY", "models": ["gpt-realtime"],
 *         "deployments": { "gpt-realtime": "my-realtime-deployment" }, "priority": 0 },
 *       { "name": "openai", "kind": "openai", "baseUrl": "https://api.openai.com/v1",
 *         "apiKeyEnv": "OPENAI_API_KEY", "priority": 1 }
 *     ],
 *     "aliases": { "fast": "gpt-realtime-mini" }
 *   }
 *
 * Keys are never written in the file: each upstream names the environment
 * variable that holds its key.
 */
const upstreamSchema = z.object({
  name: z.string().min(1),
  kind: z.enum(['openai', 'azure', 'azure-preview']).default('openai'),
  baseUrl: z.string().refine((v) => {
    try {
      return ['https:', 'http:', 'wss:', 'ws:'].includes(new URL(v).protocol);
    } catch {
      return false;
    }
  }, 'must be an http(s) or ws(s) URL'),
  apiKeyEnv: z.string().min(1),
  models: z.array(z.string().min(1)).default([]),
  deployments: z.record(z.string(), z.string().min(1)).default({}),
  apiVersion: z.string().min(1).optional(),
  priority: z.number().int().default(0),
});

const fileSchema = z.object({
  upstreams: z.array(upstreamSchema).min(1),
  aliases: z.record(z.string(), z.string().min(1)).default({}),
});

export interface UpstreamConfig {
  upstreams: Upstream[];
  /** Client model name → the model actually requested (and billed). */
  aliases: Record<string, string>;
}

export function loadUpstreamsFile(path: string, env: NodeJS.ProcessEnv = process.env): UpstreamConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ConfigError('RELAY_UPSTREAMS_FILE', `cannot read ${path} as JSON (${(error as Error).message})`);
  }
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError('RELAY_UPSTREAMS_FILE', `${path}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const names = new Set<string>();
  const upstreams = parsed.data.upstreams.map((entry, index) => {
    if (names.has(entry.name)) throw new ConfigError('RELAY_UPSTREAMS_FILE', `${path}: upstreams.${index}.name: "${entry.name}" is listed twice`);
    names.add(entry.name);
    const apiKey = env[entry.apiKeyEnv];
    if (!apiKey) throw new ConfigError(entry.apiKeyEnv, `upstream "${entry.name}" takes its key from ${entry.apiKeyEnv}, which is not set`);
    return { ...entry, apiKey, deployments: { ...entry.deployments } } satisfies Upstream;
  });
  return { upstreams, aliases: parsed.data.aliases };
}

/** The upstreams that serve `model`, in failover order. */
export function upstreamsServing(config: UpstreamConfig, model: string): Upstream[] {
  return config.upstreams
    .filter((u) => u.models.length === 0 || u.models.includes(model) || Object.hasOwn(u.deployments, model))
    .sort((a, b) => a.priority - b.priority);
}

/** Own properties only: a model named `constructor` or `toString` is just an unknown name. */
export function resolveAlias(config: UpstreamConfig, model: string): string {
  return Object.hasOwn(config.aliases, model) ? config.aliases[model]! : model;
}
