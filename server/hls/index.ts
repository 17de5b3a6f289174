// HLS and Low-Latency HLS output: a hand-written fMP4 packager and playlists.
export { HlsService } from './service.js';
export type { HlsConfig, HlsServiceEvents, HlsServiceOptions, ViewerAuthorizer } from './service.js';
export { HlsSession } from './session.js';
export type { HlsPart, HlsSegment, HlsSessionEvents } from './session.js';
export { HlsDiskStore } from './disk-store.js';
export type { HlsDiskStoreStats } from './disk-store.js';
export { Fragmenter } from './fragmenter.js';
export type { FragmenterEpoch, FragmenterOptions, FragmenterPart, FragmenterStats } from './fragmenter.js';
export { codecStrings, initSegment, mediaFragment } from './fmp4.js';
export type { TrackSet } from './fmp4.js';
export { renderPlaylist } from './playlist.js';
export { OpusAacTranscoder } from './opus-aac.js';
export { parseHlsUrl } from './http.js';
