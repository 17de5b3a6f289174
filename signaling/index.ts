// The public face of signaling: the socket.io service viewers negotiate with.
export { SignalingService, MAX_MESSAGE_BYTES } from './service.js';
export type { SignalingServiceEvents, SignalingServiceOptions, SignalingStats } from './service.js';
export { ViewerSession } from './session.js';
export type { SessionInfo, TransportInfo, ViewerTransportStats } from './session.js';
export { capabilitiesCover, describeMissingCodec, h264ProfileName } from './codec-support.js';
