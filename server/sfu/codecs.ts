import type { types } from 'mediasoup';

type RtpCodecCapability = types.RtpCodecCapability;

/**
 * The codecs every router offers. H.264 appears once per profile because
 * mediasoup matches producers and consumers by profile: Constrained Baseline
 * and Baseline and Main are what every browser decodes (Debian's Chromium
 * receives only 42001f, 42e01f, 4d001f and f4001f); High is there for the
 * `passthrough` policy and for viewers that can take it.
 */
export const MEDIA_CODECS: RtpCodecCapability[] = [
	{
		kind: 'audio',
		mimeType: 'audio/opus',
		clockRate: 48000,
		channels: 2,
		parameters: { useinbandfec: 1, 'sprop-stereo': 1 },
	},
	...['42e01f', '42001f', '4d001f', '640032'].map(
		(profileLevelId): RtpCodecCapability => ({
			kind: 'video',
			mimeType: 'video/H264',
			clockRate: 90000,
			parameters: {
				'packetization-mode': 1,
				'profile-level-id': profileLevelId,
				'level-asymmetry-allowed': 1,
			},
			rtcpFeedback: [
				{ type: 'nack' },
				{ type: 'nack', parameter: 'pli' },
				{ type: 'ccm', parameter: 'fir' },
				{ type: 'goog-remb' },
				{ type: 'transport-cc' },
			],
		}),
	),
];
