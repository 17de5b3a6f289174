import { BadRequest } from '../common/errors.js';

/*
 * Just enough Ogg (RFC 3533) and Ogg Opus (RFC 7845) to hand Opus packets to
 * ffmpeg over a pipe with their timing: one packet per page, the granule
 * position counting 48 kHz samples.
 */

const CRC_TABLE = (() => {
	const t = new Uint32Array(256);
	for (let i = 0; i < 256; i++) {
		let r = i << 24;
		for (let j = 0; j < 8; j++) r = r & 0x8000_0000 ? (r << 1) ^ 0x04c1_1db7 : r << 1;
		t[i] = r >>> 0;
	}
	return t;
})();

/** Ogg's CRC-32: polynomial 0x04c11db7, not reflected, initial value 0. */
export function oggCrc(buf: Buffer): number {
	let crc = 0;
	for (const b of buf) crc = ((crc << 8) ^ (CRC_TABLE[((crc >>> 24) ^ b) & 0xff] ?? 0)) >>> 0;
	return crc >>> 0;
}

export const OGG_BOS = 0x02;
export const OGG_EOS = 0x04;

/** The largest packet one page can hold (255 lacing values of 255 bytes). */
export const OGG_MAX_PACKET = 255 * 255 - 1;

/** One Ogg page holding exactly one packet. */
export function oggPage(packet: Buffer, opts: { serial: number; sequence: number; granule: bigint; flags?: number }): Buffer {
	if (packet.length > OGG_MAX_PACKET) throw new BadRequest(`packet of ${packet.length} bytes does not fit an Ogg page`);
	const lacing: number[] = [];
	let left = packet.length;
	while (left >= 255) {
		lacing.push(255);
		left -= 255;
	}
	lacing.push(left);
	const header = Buffer.alloc(27 + lacing.length);
	header.write('OggS', 0, 'latin1');
	header[4] = 0; // version
	header[5] = opts.flags ?? 0;
	header.writeBigInt64LE(opts.granule, 6);
	header.writeUInt32LE(opts.serial >>> 0, 14);
	header.writeUInt32LE(opts.sequence >>> 0, 18);
	header[26] = lacing.length;
	Buffer.from(lacing).copy(header, 27);
	const page = Buffer.concat([header, packet]);
	page.writeUInt32LE(oggCrc(page), 22);
	return page;
}

/** The OpusHead identification header (RFC 7845 5.1), mapping family 0. */
export function opusHead(channels: number, preSkip = 0, inputRate = 48_000): Buffer {
	if (channels < 1 || channels > 2) throw new BadRequest(`Opus with ${channels} channels needs a channel mapping table`);
	const b = Buffer.alloc(19);
	b.write('OpusHead', 0, 'latin1');
	b[8] = 1; // version
	b[9] = channels;
	b.writeUInt16LE(preSkip, 10);
	b.writeUInt32LE(inputRate, 12);
	b.writeInt16LE(0, 16); // output gain
	b[18] = 0; // mapping family
	return b;
}

/** The OpusTags comment header (RFC 7845 5.2) with no comments. */
export function opusTags(vendor = 'subsecond'): Buffer {
	const v = Buffer.from(vendor, 'utf8');
	const b = Buffer.alloc(8 + 4 + v.length + 4);
	b.write('OpusTags', 0, 'latin1');
	b.writeUInt32LE(v.length, 8);
	v.copy(b, 12);
	b.writeUInt32LE(0, 12 + v.length);
	return b;
}

/** Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 3.1); 0 if malformed. */
export function opusPacketSamples(packet: Buffer): number {
	const toc = packet[0];
	if (toc === undefined) return 0;
	const config = toc >> 3;
	let frameSamples: number;
	if (config < 12) frameSamples = [480, 960, 1920, 2880][config & 3] ?? 0; // SILK: 10, 20, 40, 60 ms
	else if (config < 16) frameSamples = config & 1 ? 960 : 480; // hybrid: 10, 20 ms
	else frameSamples = [120, 240, 480, 960][config & 3] ?? 0; // CELT: 2.5, 5, 10, 20 ms
	let frames: number;
	switch (toc & 3) {
		case 0:
			frames = 1;
			break;
		case 1:
		case 2:
			frames = 2;
			break;
		default: {
			const count = packet[1];
			if (count === undefined) return 0;
			frames = count & 0x3f;
		}
	}
	const samples = frames * frameSamples;
	// A packet holds at most 120 ms.
	return samples > 5760 ? 0 : samples;
}
