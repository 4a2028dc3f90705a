/**
 * Translation between the beta Realtime interface, which many deployed
 * clients still speak, and the GA interface the relay speaks upstream.
 */
export { isBetaClient } from './detect.js';
export { isTranslatedClientEvent, translateClientEvent, type ClientTranslation } from './client-events.js';
export { translateServerEvent } from './server-events.js';
export { renameEventType } from './event-type.js';
export { DROPPED_BETA_SESSION_FIELDS, type DroppedBetaField } from './session.js';
