import type { VideoConfig, VideoPolicy } from '../../server/core/media.js';

/**
 * The profile-level-id a producer can announce for this SPS, in the
 * canonical form of its profile (RFC 6184 8.1, the table mediasoup's
 * h264-profile-level-id uses); null when the routers offer no such profile
 * (MEDIA_CODECS has Constrained Baseline, Baseline, Main and High).
 */
export function negotiableProfileLevelId(profileIdc: number, constraintFlags: number, levelIdc: number): string | null {
	const level = (levelIdc & 0xff).toString(16).padStart(2, '0');
	const iop = constraintFlags & 0xff;
	const lowZero = (iop & 0x0f) === 0;
	if (profileIdc === 0x42 && lowZero) return iop & 0x40 ? `42e0${level}` : `4200${level}`;
	if (profileIdc === 0x4d && lowZero) {
		if (iop & 0x80) return `42e0${level}`; // constraint_set0 on Main: Constrained Baseline
		if ((iop & 0x20) === 0) return `4d00${level}`;
		return null;
	}
	if (profileIdc === 0x64 && iop === 0) return `6400${level}`;
	return null;
}

export type VideoDecision =
	| {
			action: 'passthrough';
			reason: string;
			profileLevelId: string;
			/** false: no B-frames known yet, the frames are watched for reordering. */
			final: boolean;
	  }
	| { action: 'transcode'; reason: string }
	| { action: 'reject'; reason: string };

export interface VideoEvidence {
	/** A frame arrived with a presentation time before an earlier frame's. */
	reorderSeen?: boolean;
}

/**
 * What WebRTC players take well: Constrained Baseline, Baseline or Main,
 * without B-frames. `auto` passes those through and transcodes the rest;
 * `reject` refuses the rest; `passthrough` forwards everything it can
 * announce. B-frames are known from the SPS (max_num_reorder_frames) when the
 * encoder wrote it, otherwise from the first frame out of presentation order.
 */
export function decideVideoPath(config: VideoConfig, policy: VideoPolicy, evidence: VideoEvidence = {}): VideoDecision {
	const pli = negotiableProfileLevelId(config.profileIdc, config.constraintFlags, config.levelIdc);
	const reorder = config.maxReorderFrames;
	const bframes =
		reorder !== null && reorder > 0
			? `B-frames (SPS max_num_reorder_frames=${reorder})`
			: evidence.reorderSeen
				? 'B-frames (frames arrive out of presentation order)'
				: null;
	if (policy === 'passthrough') {
		if (pli) {
			const what = [config.profile, bframes].filter(Boolean).join(', ');
			return { action: 'passthrough', reason: `videoPolicy passthrough: forwarded as published (${what})`, profileLevelId: pli, final: true };
		}
		return { action: 'transcode', reason: `${config.profile} (profile-level-id ${config.profileLevelId}) cannot be announced to WebRTC players` };
	}
	let problem: string | null = null;
	if (!pli || (config.profileIdc !== 0x42 && config.profileIdc !== 0x4d)) {
		problem = `${config.profile} profile: not every WebRTC player decodes it (Constrained Baseline, Baseline and Main are safe)`;
	} else if (bframes) {
		problem = `${bframes}: WebRTC players show them out of order or stutter`;
	}
	if (problem) {
		if (policy === 'reject') {
			return {
				action: 'reject',
				reason:
					`video refused by videoPolicy 'reject': ${problem}; ` +
					'publish H.264 Constrained Baseline or Main without B-frames (x264: profile baseline or main, bframes=0)',
			};
		}
		return { action: 'transcode', reason: problem };
	}
	const final = reorder === 0;
	const known = final ? 'no B-frames (SPS max_num_reorder_frames=0)' : 'no B-frames seen so far';
	return { action: 'passthrough', reason: `${config.profile}, ${known}`, profileLevelId: pli as string, final };
}
