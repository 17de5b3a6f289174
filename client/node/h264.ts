/**
 * Whether an H.264 RTP payload (RFC 6184) begins a keyframe: an IDR slice or
 * the SPS an encoder sends right before one, as a single NAL unit, inside a
 * STAP-A, or as the first fragment of an FU-A. Cheap enough to run on every
 * packet of a hundred viewers; nothing is depacketized.
 */
export function startsH264Keyframe(payload: Uint8Array): boolean {
	const first = payload[0];
	if (first === undefined) return false;
	const type = first & 0x1f;
	if (type === 5 || type === 7) return true;
	if (type === 24) {
		let offset = 1;
		while (offset + 2 < payload.length) {
			const size = ((payload[offset] ?? 0) << 8) | (payload[offset + 1] ?? 0);
			const t = (payload[offset + 2] ?? 0) & 0x1f;
			if (t === 5 || t === 7) return true;
			offset += 2 + size;
		}
		return false;
	}
	if (type === 28) {
		const fu = payload[1];
		return fu !== undefined && (fu & 0x80) !== 0 && (fu & 0x1f) === 5;
	}
	return false;
}
