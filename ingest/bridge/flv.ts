import { FLV_TAG } from '../rtmp/flv.js';

/**
 * Just enough FLV to feed ffmpeg with timestamps intact and to read its
 * output back: FLV is what ffmpeg reads and writes with the least probing
 * and the least buffering, and it carries composition offsets (B-frames).
 */

/** The FLV file header and PreviousTagSize0. */
export function flvHeader(video: boolean, audio: boolean): Buffer {
	return Buffer.from([0x46, 0x4c, 0x56, 1, (audio ? 4 : 0) | (video ? 1 : 0), 0, 0, 0, 9, 0, 0, 0, 0]);
}

/** One FLV tag: header, body parts, PreviousTagSize. `timestampMs` is clamped to 0..2^32-1. */
export function flvTag(type: number, timestampMs: number, body: readonly Buffer[]): Buffer {
	let size = 0;
	for (const b of body) size += b.length;
	const out = Buffer.allocUnsafe(11 + size + 4);
	const ts = Math.max(0, Math.min(0xffffffff, Math.round(timestampMs)));
	out[0] = type;
	out.writeUIntBE(size, 1, 3);
	out.writeUIntBE(ts & 0xffffff, 4, 3);
	out[7] = (ts >>> 24) & 0xff;
	out.writeUIntBE(0, 8, 3);
	let off = 11;
	for (const b of body) {
		b.copy(out, off);
		off += b.length;
	}
	out.writeUInt32BE(11 + size, off);
	return out;
}

/** AVC sequence header tag (the avcC record). */
export function avcSequenceHeaderTag(timestampMs: number, avcC: Buffer): Buffer {
	return flvTag(FLV_TAG.VIDEO, timestampMs, [Buffer.from([0x17, 0, 0, 0, 0]), avcC]);
}

/** AVC coded frame tag: NAL units with 4-byte length prefixes, composition offset in ms. */
export function avcFrameTag(dtsMs: number, ctsMs: number, keyframe: boolean, nalus: readonly Buffer[]): Buffer {
	const cts = Math.max(-0x800000, Math.min(0x7fffff, Math.round(ctsMs)));
	const head = Buffer.from([keyframe ? 0x17 : 0x27, 1, (cts >> 16) & 0xff, (cts >> 8) & 0xff, cts & 0xff]);
	const parts: Buffer[] = [head];
	for (const n of nalus) {
		const len = Buffer.allocUnsafe(4);
		len.writeUInt32BE(n.length);
		parts.push(len, n);
	}
	return flvTag(FLV_TAG.VIDEO, dtsMs, parts);
}

/** AAC sequence header tag (the AudioSpecificConfig). 0xAF: AAC, 44 kHz, 16 bit, stereo, as FLV always says for AAC. */
export function aacSequenceHeaderTag(timestampMs: number, asc: Buffer): Buffer {
	return flvTag(FLV_TAG.AUDIO, timestampMs, [Buffer.from([0xaf, 0]), asc]);
}

export function aacFrameTag(timestampMs: number, data: Buffer): Buffer {
	return flvTag(FLV_TAG.AUDIO, timestampMs, [Buffer.from([0xaf, 1]), data]);
}

export interface FlvTagEvent {
	type: number;
	/** Tag timestamp (decode time), ms. */
	timestamp: number;
	body: Buffer;
}

/**
 * Incremental FLV reader for a byte stream (ffmpeg's stdout): feed chunks,
 * get whole tags. Throws on a stream that is not FLV.
 */
export class FlvReader {
	#buf: Buffer = Buffer.alloc(0);
	#headerDone = false;
	readonly #onTag: (tag: FlvTagEvent) => void;
	readonly #maxTagSize: number;

	constructor(onTag: (tag: FlvTagEvent) => void, maxTagSize = 16 * 1024 * 1024) {
		this.#onTag = onTag;
		this.#maxTagSize = maxTagSize;
	}

	reset(): void {
		this.#buf = Buffer.alloc(0);
		this.#headerDone = false;
	}

	push(chunk: Buffer): void {
		this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
		if (!this.#headerDone) {
			if (this.#buf.length < 13) return;
			if (this.#buf.toString('latin1', 0, 3) !== 'FLV') throw new Error('not an FLV stream');
			const headerSize = this.#buf.readUInt32BE(5);
			if (this.#buf.length < headerSize + 4) return;
			this.#buf = this.#buf.subarray(headerSize + 4);
			this.#headerDone = true;
		}
		let off = 0;
		const buf = this.#buf;
		while (buf.length - off >= 11) {
			const size = buf.readUIntBE(off + 1, 3);
			if (size > this.#maxTagSize) throw new Error(`FLV tag of ${size} bytes is too large`);
			if (buf.length - off < 11 + size + 4) break;
			const type = (buf[off] ?? 0) & 0x1f;
			const timestamp = buf.readUIntBE(off + 4, 3) + (buf[off + 7] ?? 0) * 0x1000000;
			const body = buf.subarray(off + 11, off + 11 + size);
			off += 11 + size + 4;
			this.#onTag({ type, timestamp, body });
		}
		this.#buf = off === buf.length ? Buffer.alloc(0) : buf.subarray(off);
	}
}
