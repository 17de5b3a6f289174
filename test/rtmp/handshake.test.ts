import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
	GENUINE_FMS_KEY,
	GENUINE_FP_KEY,
	HANDSHAKE_SIZE,
	digestOffset,
	findDigest,
	serverHandshake,
	signPacket,
} from '../../ingest/rtmp/handshake.js';

function digestC1(scheme: 0 | 1): { c1: Buffer; digest: Buffer } {
	const c1 = randomBytes(HANDSHAKE_SIZE);
	c1.set([9, 0, 124, 2], 4); // ffmpeg's Flash Player version
	const off = signPacket(c1, scheme, GENUINE_FP_KEY.subarray(0, 30));
	return { c1, digest: Buffer.from(c1.subarray(off, off + 32)) };
}

describe('RTMP handshake', () => {
	it('puts digest offsets inside their halves', () => {
		const p = Buffer.alloc(HANDSHAKE_SIZE, 0xff);
		expect(digestOffset(p, 0)).toBe(((255 * 4) % 728) + 12);
		expect(digestOffset(p, 1)).toBe(((255 * 4) % 728) + 776);
		for (let i = 0; i < 200; i++) {
			const r = randomBytes(HANDSHAKE_SIZE);
			expect(digestOffset(r, 0) + 32).toBeLessThanOrEqual(772);
			expect(digestOffset(r, 1) + 32).toBeLessThanOrEqual(HANDSHAKE_SIZE);
		}
	});

	for (const scheme of [0, 1] as const) {
		it(`answers a digest C1 (scheme ${scheme}) with a signed S1 and S2`, () => {
			const { c1, digest } = digestC1(scheme);
			const hs = serverHandshake(c1, 1234);
			expect(hs.kind).toBe('digest');
			expect(hs.scheme).toBe(scheme);
			expect(hs.response).toHaveLength(1 + 2 * HANDSHAKE_SIZE);
			expect(hs.response[0]).toBe(3);
			const s1 = hs.response.subarray(1, 1 + HANDSHAKE_SIZE);
			const s2 = hs.response.subarray(1 + HANDSHAKE_SIZE);
			expect(s1.readUInt32BE(0)).toBe(1234);
			expect(s1.readUInt32BE(4)).not.toBe(0);
			// librtmp checks the server digest with the client's scheme first.
			expect(findDigest(s1, GENUINE_FMS_KEY.subarray(0, 36))?.scheme).toBe(scheme);
			// S2: HMAC(key = HMAC(FMS key, client digest), S2 without its last 32 bytes).
			const key = createHmac('sha256', GENUINE_FMS_KEY).update(digest).digest();
			const sig = createHmac('sha256', key).update(s2.subarray(0, HANDSHAKE_SIZE - 32)).digest();
			expect(s2.subarray(HANDSHAKE_SIZE - 32).equals(sig)).toBe(true);
		});
	}

	it('echoes C1 as S2 for a plain client (zero version field)', () => {
		const c1 = randomBytes(HANDSHAKE_SIZE);
		c1.writeUInt32BE(0, 4);
		const hs = serverHandshake(c1, 0);
		expect(hs.kind).toBe('plain');
		expect(hs.response.subarray(1 + HANDSHAKE_SIZE).equals(c1)).toBe(true);
		expect(hs.response.readUInt32BE(1 + 4)).toBe(0);
	});

	it('falls back to the plain echo when the version is set but nothing is signed', () => {
		const c1 = randomBytes(HANDSHAKE_SIZE);
		c1.set([10, 0, 32, 18], 4);
		const hs = serverHandshake(c1, 0);
		expect(hs.kind).toBe('plain');
		expect(hs.response.subarray(1 + HANDSHAKE_SIZE).equals(c1)).toBe(true);
	});

	it('refuses a C1 of the wrong size', () => {
		expect(() => serverHandshake(Buffer.alloc(100), 0)).toThrow(RangeError);
	});
});
