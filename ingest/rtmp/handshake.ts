import { createHmac, randomBytes } from 'node:crypto';

/** C1/S1/C2/S2 are each this long; C0/S0 is one version byte. */
export const HANDSHAKE_SIZE = 1536;
export const RTMP_VERSION = 3;

const DIGEST_SIZE = 32;
const KEY_TAIL = Buffer.from([
	0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57, 0x6e, 0xec, 0x5d, 0x2d, 0x29,
	0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
]);
/** "Genuine Adobe Flash Player 001" + tail: clients sign C1 with its first 30 bytes. */
export const GENUINE_FP_KEY = Buffer.concat([Buffer.from('Genuine Adobe Flash Player 001', 'latin1'), KEY_TAIL]);
/** "Genuine Adobe Flash Media Server 001" + tail: servers sign S1 with its first 36 bytes, S2 with all 68. */
export const GENUINE_FMS_KEY = Buffer.concat([Buffer.from('Genuine Adobe Flash Media Server 001', 'latin1'), KEY_TAIL]);
const FP_KEY_SHORT = GENUINE_FP_KEY.subarray(0, 30);
const FMS_KEY_SHORT = GENUINE_FMS_KEY.subarray(0, 36);

/** The version we claim in S1 (FMS 4.5.0.1): clients only log it. */
const SERVER_VERSION = 0x04050001;

/**
 * Where the 32-byte digest sits in a 1536-byte C1/S1. Scheme 0 (used by
 * ffmpeg and Flash for plain RTMP) derives it from bytes 8..11, scheme 1
 * from bytes 772..775; each scheme keeps the digest within its 764-byte half.
 */
export function digestOffset(packet: Buffer, scheme: 0 | 1): number {
	const base = scheme === 0 ? 8 : 772;
	const sum = (packet[base] ?? 0) + (packet[base + 1] ?? 0) + (packet[base + 2] ?? 0) + (packet[base + 3] ?? 0);
	return (sum % 728) + base + 4;
}

/** HMAC-SHA256 of the packet without the 32 digest bytes at `offset`. */
export function packetDigest(packet: Buffer, offset: number, key: Buffer): Buffer {
	return createHmac('sha256', key)
		.update(packet.subarray(0, offset))
		.update(packet.subarray(offset + DIGEST_SIZE, HANDSHAKE_SIZE))
		.digest();
}

/** Writes the digest into a packet in place, at the scheme's offset. */
export function signPacket(packet: Buffer, scheme: 0 | 1, key: Buffer): number {
	const offset = digestOffset(packet, scheme);
	packetDigest(packet, offset, key).copy(packet, offset);
	return offset;
}

/** Finds a valid digest made with `key` in a C1/S1; returns its offset and scheme, or null. */
export function findDigest(packet: Buffer, key: Buffer): { scheme: 0 | 1; offset: number } | null {
	for (const scheme of [0, 1] as const) {
		const offset = digestOffset(packet, scheme);
		if (packetDigest(packet, offset, key).equals(packet.subarray(offset, offset + DIGEST_SIZE))) return { scheme, offset };
	}
	return null;
}

/** S2 for a digest client: random bytes signed with a key derived from the client's digest. */
export function digestS2(clientDigest: Buffer): Buffer {
	const s2 = randomBytes(HANDSHAKE_SIZE);
	const key = createHmac('sha256', GENUINE_FMS_KEY).update(clientDigest).digest();
	const sig = createHmac('sha256', key).update(s2.subarray(0, HANDSHAKE_SIZE - DIGEST_SIZE)).digest();
	sig.copy(s2, HANDSHAKE_SIZE - DIGEST_SIZE);
	return s2;
}

export interface ServerHandshake {
	/** S0 + S1 + S2, to send in one write. */
	response: Buffer;
	/**
	 * `digest`: the client signed C1 (Flash Player 9+ "complex" handshake, as
	 * ffmpeg sends) and gets a signed S1 and S2. `plain`: S2 echoes C1, which is
	 * what GStreamer's rtmp2 and librtmp without encryption check for.
	 */
	kind: 'plain' | 'digest';
	scheme: 0 | 1 | null;
}

/** Builds the server's answer to a client's C1. `uptimeMs` goes in the S1 time field. */
export function serverHandshake(c1: Buffer, uptimeMs: number): ServerHandshake {
	if (c1.length !== HANDSHAKE_SIZE) throw new RangeError(`C1 must be ${HANDSHAKE_SIZE} bytes`);
	const s1 = randomBytes(HANDSHAKE_SIZE);
	s1.writeUInt32BE(uptimeMs >>> 0, 0);
	const clientVersion = c1.readUInt32BE(4);
	// A zero version field marks the plain handshake; only then is no digest expected.
	const found = clientVersion !== 0 ? findDigest(c1, FP_KEY_SHORT) : null;
	if (!found) {
		s1.writeUInt32BE(0, 4);
		return { response: Buffer.concat([Buffer.from([RTMP_VERSION]), s1, c1]), kind: 'plain', scheme: null };
	}
	s1.writeUInt32BE(SERVER_VERSION, 4);
	// librtmp looks for the server digest with the scheme it used itself first.
	signPacket(s1, found.scheme, FMS_KEY_SHORT);
	const clientDigest = c1.subarray(found.offset, found.offset + DIGEST_SIZE);
	return {
		response: Buffer.concat([Buffer.from([RTMP_VERSION]), s1, digestS2(clientDigest)]),
		kind: 'digest',
		scheme: found.scheme,
	};
}
