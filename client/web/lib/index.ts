/**
 * subsecond's browser viewer library: WebRTC playback of a subsecond stream
 * with mediasoup-client and socket.io-client. See docs/signaling.md.
 *
 *     import { watch } from './lib/index.js';
 *     const viewer = await watch({ server: 'https://live.example.com', stream: 'studio' });
 *     viewer.on('offline', () => showBanner('the stream will be right back'));
 *     await viewer.attach(document.querySelector('video')!);
 */
export { Viewer, watch, webrtcSupported } from './viewer.js';
export type { TrackStats, ViewerEvents, ViewerStats, WatchOptions } from './viewer.js';
export { SignalingError } from '../../shared/errors.js';
export type { SignalingErrorCode } from '../../shared/protocol.js';
