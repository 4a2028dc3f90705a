/**
 * Conversation items and content parts: GA renamed the assistant's content
 * part types (`text` → `output_text`, `audio` → `output_audio`); user and
 * system parts (`input_text`, `input_audio`, ...) kept their names.
 */
import { isJsonObject, type JsonObject } from '../json.js';

const ASSISTANT_PART_TO_GA: Readonly<Record<string, string>> = { text: 'output_text', audio: 'output_audio' };
const PART_TO_BETA: Readonly<Record<string, string>> = { output_text: 'text', output_audio: 'audio' };

function renamePart(part: unknown, names: Readonly<Record<string, string>>): unknown {
  if (!isJsonObject(part)) return part;
  const type = part['type'];
  const renamed = typeof type === 'string' && Object.hasOwn(names, type) ? names[type] : undefined;
  return renamed === undefined ? part : { ...part, type: renamed };
}

/** Returns `item` itself when no part needed renaming. */
function renameContent(item: JsonObject, names: Readonly<Record<string, string>>): JsonObject {
  const content = item['content'];
  if (!Array.isArray(content)) return item;
  const renamed = content.map((part) => renamePart(part, names));
  return renamed.some((part, i) => part !== content[i]) ? { ...item, content: renamed } : item;
}

/** A beta item as sent in `conversation.item.create` or `response.create.input` → GA. */
export function betaItemToGa(item: unknown): unknown {
  if (!isJsonObject(item) || item['role'] !== 'assistant') return item;
  return renameContent(item, ASSISTANT_PART_TO_GA);
}

/** A GA item as the server reports it → beta. Returns `item` itself when unchanged. */
export function gaItemToBeta(item: unknown): unknown {
  return isJsonObject(item) ? renameContent(item, PART_TO_BETA) : item;
}

/** A GA content part (`response.content_part.*`) → beta. Returns `part` itself when unchanged. */
export function gaPartToBeta(part: unknown): unknown {
  return renamePart(part, PART_TO_BETA);
}

/** Maps every element, returning `items` itself when none changed. */
export function mapItems(items: unknown, convert: (item: unknown) => unknown): unknown {
  if (!Array.isArray(items)) return items;
  const mapped = items.map(convert);
  return mapped.some((item, i) => item !== items[i]) ? mapped : items;
}
