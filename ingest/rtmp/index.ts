// The RTMP ingest: what the rest of the server uses of it.
export { RtmpServer } from './server.js';
export type { RtmpServerEvents, RtmpServerOptions, RtmpServerStats } from './server.js';
export type { RtmpConnectionInfo, RtmpConnectionState, RtmpCounters, RtmpErrorReason, RtmpProtocol } from './connection.js';
export { FLV_TAG, FlvDemuxer } from './flv.js';
export type { FlvEvent } from './flv.js';
