import type { AudioConfig } from './codecs/audio.js';
import type { H264Config } from './codecs/h264.js';

export type VideoConfig = H264Config;
export type { AudioConfig };

/**
 * One H.264 access unit. Times are milliseconds on the publisher's timeline
 * (may be fractional); `pts - dts` is the composition offset, non-zero only
 * when the stream has B-frames.
 */
export interface VideoFrame {
	kind: 'video';
	dts: number;
	pts: number;
	keyframe: boolean;
	/** NAL units without start codes or length prefixes. */
	nalus: Buffer[];
	/** performance.now() when the last byte of the frame arrived. */
	receivedAt: number;
}

/** One raw audio frame: an AAC access unit (no ADTS header) or an Opus packet. */
export interface AudioFrame {
	kind: 'audio';
	pts: number;
	data: Buffer;
	receivedAt: number;
}

export type MediaFrame = VideoFrame | AudioFrame;

export type PublisherProtocol = 'rtmp' | 'rtmps' | 'rtp';

/** The per-stream policy for video WebRTC players cannot take as is. */
export type VideoPolicy = 'auto' | 'passthrough' | 'reject';
