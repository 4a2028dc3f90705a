import { isTranslatedClientEvent, translateClientEvent, translateServerEvent } from '../protocol/beta/index.js';

/** Rewrites frames for clients that speak another dialect (beta). Return null to drop a frame. */
export interface FrameTranslator {
  toUpstream(type: string, frame: Buffer): Buffer | string | null;
  toClient(type: string, frame: Buffer): Buffer | string | null;
}

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
