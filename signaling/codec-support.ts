import type { RtpCapabilities, RtpCodecParameters } from '../client/shared/protocol.js';

// Enough H.264 profile knowledge to tell a viewer *why* it cannot receive a
// stream (router.canConsume only says no). The table is RFC 6184's, as
// libwebrtc and mediasoup read it: profile_idc plus a pattern over the
// constraint-set byte (MSB first, x = any).
const PROFILE_PATTERNS: [number, string, string][] = [
	[0x42, 'x1xx0000', 'Constrained Baseline'],
	[0x4d, '1xxx0000', 'Constrained Baseline'],
	[0x58, '11xx0000', 'Constrained Baseline'],
	[0x42, 'x0xx0000', 'Baseline'],
	[0x58, '10xx0000', 'Baseline'],
	[0x4d, '0x0x0000', 'Main'],
	[0x64, '00000000', 'High'],
	[0x64, '00001100', 'Constrained High'],
	[0xf4, '00000000', 'Predictive High 4:4:4'],
];

function matchesPattern(byte: number, pattern: string): boolean {
	for (let i = 0; i < 8; i++) {
		const c = pattern[i];
		if (c === 'x') continue;
		const bit = (byte >> (7 - i)) & 1;
		if (String(bit) !== c) return false;
	}
	return true;
}

/** The profile named by an H.264 profile-level-id (6 hex digits), or null. */
export function h264ProfileName(profileLevelId: string): string | null {
	if (!/^[0-9a-fA-F]{6}$/.test(profileLevelId)) return null;
	const idc = parseInt(profileLevelId.slice(0, 2), 16);
	const iop = parseInt(profileLevelId.slice(2, 4), 16);
	for (const [pIdc, pattern, name] of PROFILE_PATTERNS) {
		if (pIdc === idc && matchesPattern(iop, pattern)) return name;
	}
	return null;
}

function h264Params(p: Record<string, unknown> | undefined): { profile: string | null; plid: string; mode: number } {
	const plid = typeof p?.['profile-level-id'] === 'string' ? p['profile-level-id'] : '42e01f';
	const mode = Number(p?.['packetization-mode'] ?? 0);
	return { profile: h264ProfileName(plid), plid, mode };
}

/**
 * Whether the capabilities list a codec that can carry `codec` (same type,
 * clock rate and channels; for H.264 the same profile and packetization mode).
 */
export function capabilitiesCover(codec: RtpCodecParameters, caps: RtpCapabilities): boolean {
	const mime = codec.mimeType.toLowerCase();
	return (caps.codecs ?? []).some((c) => {
		if (c.mimeType.toLowerCase() !== mime || c.clockRate !== codec.clockRate) return false;
		if (mime.startsWith('audio/') && (c.channels ?? 1) !== (codec.channels ?? 1)) return false;
		if (mime !== 'video/h264') return true;
		const want = h264Params(codec.parameters);
		const have = h264Params(c.parameters);
		return want.profile !== null && want.profile === have.profile && want.mode === have.mode;
	});
}

/** A sentence saying what the client is missing to receive `codec`. */
export function describeMissingCodec(codec: RtpCodecParameters, caps: RtpCapabilities): string {
	const mime = codec.mimeType;
	if (mime.toLowerCase() !== 'video/h264') {
		return `this client cannot receive ${mime}/${codec.clockRate}${codec.channels ? `/${codec.channels}` : ''}`;
	}
	const want = h264Params(codec.parameters);
	const offered = (caps.codecs ?? [])
		.filter((c) => c.mimeType.toLowerCase() === 'video/h264')
		.map((c) => {
			const h = h264Params(c.parameters);
			return `${h.plid} (${h.profile ?? 'unknown profile'})`;
		});
	const what = `H.264 ${want.profile ?? 'of an unknown profile'} (profile-level-id ${want.plid})`;
	return offered.length === 0
		? `this client cannot receive H.264 at all; the stream is ${what}`
		: `the stream is ${what} but this client receives H.264 only as ${[...new Set(offered)].join(', ')}`;
}
