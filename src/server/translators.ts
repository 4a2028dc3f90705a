import { isTranslatedClientEvent, translateClientEvent, translateServerEvent } from '../protocol/beta/index.js';
import type { FrameTranslator } from './session-link.js';

/** Beta clients against a GA upstream: only the events whose shape changed are read and rewritten. */
export const betaTranslator: FrameTranslator = {
  toUpstream(type, frame) {
    if (!isTranslatedClientEvent(type)) return frame;
    const translated = translateClientEvent(frame.toString('utf8'));
    return 'drop' in translated ? null : translated.frame;
  },
  toClient(type, frame) {
    return translateServerEvent(frame, type);
  },
};
