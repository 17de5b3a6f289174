export { MEDIA_CODECS } from './codecs.js';
export { WorkerPool, assertWorkerBinary, defaultAnnouncedIp } from './worker-pool.js';
export type { WebRtcServer, Worker, WorkerPoolEvents, WorkerPoolOptions, WorkerSlot } from './worker-pool.js';
export { StreamRouters } from './stream-routers.js';
export type { Producer, Router, StreamRouter, StreamRoutersEvents } from './stream-routers.js';
