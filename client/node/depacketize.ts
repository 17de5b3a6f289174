// Turning received RTP into byte streams ffmpeg reads from a pipe: H.264
// (RFC 6184) into Annex B, Opus (RFC 7587) into Ogg (RFC 7845). A pipe loses
// nothing while ffmpeg starts, and survives the SSRC and sequence jumps of a
// re-consume, which an RTP/SDP input would not.

const START_CODE = Buffer.from([0, 0, 0, 1]);
/** Access unit delimiter: lets ffmpeg's parser close a picture as soon as it ends. */
const AUD = Buffer.from([0, 0, 0, 1, 0x09, 0xf0]);

/**
 * H.264 RTP payloads to an Annex B byte stream. Single NAL units, STAP-A and
 * FU-A; a fragmented NAL unit with a sequence gap is dropped whole, the
 * decoder conceals the rest until the next keyframe.
 */
export class H264Depacketizer {
	#fu: Buffer[] | null = null;
	#lastSeq: number | null = null;
	dropped = 0;

	/** Annex B bytes for this packet (possibly none); `marker` ends an access unit. */
	push(payload: Buffer, seq: number, marker: boolean): Buffer[] {
		const out: Buffer[] = [];
		const gap = this.#lastSeq !== null && ((this.#lastSeq + 1) & 0xffff) !== seq;
		this.#lastSeq = seq;
		const first = payload[0];
		if (first === undefined) return out;
		const type = first & 0x1f;
		if (type >= 1 && type <= 23) {
			this.#fu = null;
			out.push(START_CODE, payload);
		} else if (type === 24) {
			this.#fu = null;
			let offset = 1;
			while (offset + 2 <= payload.length) {
				const size = payload.readUInt16BE(offset);
				offset += 2;
				if (size === 0 || offset + size > payload.length) break;
				out.push(START_CODE, payload.subarray(offset, offset + size));
				offset += size;
			}
		} else if (type === 28 && payload.length > 2) {
			const fu = payload[1] ?? 0;
			const start = (fu & 0x80) !== 0;
			const end = (fu & 0x40) !== 0;
			if (start) {
				this.#fu = [Buffer.from([(first & 0xe0) | (fu & 0x1f)]), payload.subarray(2)];
			} else if (this.#fu && !gap) {
				this.#fu.push(payload.subarray(2));
			} else {
				if (this.#fu) this.dropped++;
				this.#fu = null;
			}
			if (end && this.#fu) {
				out.push(START_CODE, ...this.#fu);
				this.#fu = null;
			}
		}
		if (marker) out.push(AUD);
		return out;
	}
}

// Ogg's CRC-32: polynomial 0x04c11db7, no reflection, initial value 0.
const CRC_TABLE = new Uint32Array(256);
for (let i = 0; i < 256; i++) {
	let r = i << 24;
	for (let j = 0; j < 8; j++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
	CRC_TABLE[i] = r >>> 0;
}

function oggCrc(buf: Buffer): number {
	let crc = 0;
	for (const b of buf) crc = ((crc << 8) ^ (CRC_TABLE[((crc >>> 24) ^ b) & 0xff] ?? 0)) >>> 0;
	return crc;
}

/** Samples at 48 kHz in one Opus packet, from its TOC byte (RFC 6716 section 3.1). */
export function opusPacketSamples(packet: Buffer): number {
	const toc = packet[0];
	if (toc === undefined) return 0;
	const config = toc >> 3;
	let frameUs: number;
	if (config < 12) frameUs = [10_000, 20_000, 40_000, 60_000][config & 3] ?? 20_000;
	else if (config < 16) frameUs = (config & 1) === 0 ? 10_000 : 20_000;
	else frameUs = [2_500, 5_000, 10_000, 20_000][config & 3] ?? 20_000;
	const code = toc & 3;
	const frames = code === 0 ? 1 : code === 3 ? (packet[1] ?? 0) & 0x3f : 2;
	return (frames * frameUs * 48) / 1000;
}

/** Opus packets to an Ogg Opus stream, one packet per page. */
export class OggOpusWriter {
	readonly #serial = Math.floor(Math.random() * 0xffffffff);
	#seq = 0;
	#granule = 0n;
	#started = false;

	#page(packet: Buffer, flags: number, granule: bigint): Buffer {
		const segments: number[] = [];
		let left = packet.length;
		while (left >= 255) {
			segments.push(255);
			left -= 255;
		}
		segments.push(left);
		const header = Buffer.alloc(27 + segments.length);
		header.write('OggS', 0, 'latin1');
		header[4] = 0;
		header[5] = flags;
		header.writeBigUInt64LE(granule, 6);
		header.writeUInt32LE(this.#serial, 14);
		header.writeUInt32LE(this.#seq++, 18);
		header[26] = segments.length;
		segments.forEach((s, i) => (header[27 + i] = s));
		const page = Buffer.concat([header, packet]);
		page.writeUInt32LE(oggCrc(page), 22);
		return page;
	}

	/** The stream's header pages, then one page for this packet. */
	push(packet: Buffer, channels = 2): Buffer[] {
		const out: Buffer[] = [];
		if (!this.#started) {
			this.#started = true;
			const head = Buffer.alloc(19);
			head.write('OpusHead', 0, 'latin1');
			head[8] = 1;
			head[9] = channels;
			head.writeUInt16LE(312, 10);
			head.writeUInt32LE(48000, 12);
			head.writeInt16LE(0, 16);
			head[18] = 0;
			out.push(this.#page(head, 0x02, 0n));
			const vendor = Buffer.from('subsecond', 'latin1');
			const tags = Buffer.alloc(8 + 4 + vendor.length + 4);
			tags.write('OpusTags', 0, 'latin1');
			tags.writeUInt32LE(vendor.length, 8);
			vendor.copy(tags, 12);
			tags.writeUInt32LE(0, 12 + vendor.length);
			out.push(this.#page(tags, 0, 0n));
		}
		this.#granule += BigInt(opusPacketSamples(packet));
		out.push(this.#page(packet, 0, this.#granule));
		return out;
	}
}
