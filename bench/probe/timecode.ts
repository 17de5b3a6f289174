// The latency probe's picture code: each frame carries the wall-clock time at
// which it was captured and its sequence number, drawn as big black and white
// blocks that survive H.264 compression at ordinary bitrates. Pure functions
// with no Node or DOM imports, so the browser viewer bundles the same reader.

/**
 * Bits in the code: the low 40 bits of the time in ms (35 years before they
 * wrap; the reader restores the rest from its own clock), a 24-bit frame
 * number, and a 16-bit CRC so a frame misread under compression is rejected
 * rather than taken for a wrong time (an 8-bit CRC let one in 256 through).
 */
export const TIME_BITS = 40;
export const SEQ_BITS = 24;
export const CRC_BITS = 16;
export const CODE_BITS = TIME_BITS + SEQ_BITS + CRC_BITS;
/** Blocks per row; the code takes two rows at the top of the frame. */
export const BLOCKS_PER_ROW = 40;

const BLACK = 16;
const WHITE = 235;

export interface Timecode {
	/** Capture time, ms since the Unix epoch. */
	timeMs: number;
	/** Frame number, modulo 2^24. */
	seq: number;
}

export interface Layout {
	block: number;
	rows: number;
	/** Top-left corner of bit i. */
	origin(i: number): { x: number; y: number };
}

export function layout(width: number, height: number): Layout {
	const block = Math.floor(width / BLOCKS_PER_ROW);
	const rows = Math.ceil(CODE_BITS / BLOCKS_PER_ROW);
	if (block < 8 || rows * block > height) throw new RangeError(`frame ${width}x${height} is too small for the timecode`);
	return {
		block,
		rows,
		origin: (i: number) => ({ x: (i % BLOCKS_PER_ROW) * block, y: Math.floor(i / BLOCKS_PER_ROW) * block }),
	};
}

/** CRC-16/CCITT (polynomial 0x1021, initial 0xffff) over a bit array. */
export function crc16(bits: readonly number[]): number {
	let crc = 0xffff;
	for (const bit of bits) {
		const top = ((crc >> 15) & 1) ^ bit;
		crc = ((crc << 1) & 0xffff) ^ (top ? 0x1021 : 0);
	}
	return crc;
}

const TIME_MOD = 2 ** TIME_BITS;

/** The full time nearest to `nowMs` whose low TIME_BITS bits are `lowMs`. */
export function unwrapTime(lowMs: number, nowMs: number): number {
	const base = nowMs - (nowMs % TIME_MOD);
	let t = base + lowMs;
	if (t - nowMs > TIME_MOD / 2) t -= TIME_MOD;
	else if (nowMs - t > TIME_MOD / 2) t += TIME_MOD;
	return t;
}

function toBits(value: number, n: number): number[] {
	const bits: number[] = [];
	for (let i = n - 1; i >= 0; i--) bits.push(Math.floor(value / 2 ** i) % 2);
	return bits;
}

function fromBits(bits: readonly number[]): number {
	let v = 0;
	for (const b of bits) v = v * 2 + b;
	return v;
}

export function encodeBits(code: Timecode): number[] {
	const payload = [...toBits(Math.round(code.timeMs) % TIME_MOD, TIME_BITS), ...toBits(code.seq % 2 ** SEQ_BITS, SEQ_BITS)];
	return [...payload, ...toBits(crc16(payload), CRC_BITS)];
}

/** Reads bits back; the time is restored relative to `nowMs` (the reader's clock). */
export function decodeBits(bits: readonly number[], nowMs: number = Date.now()): Timecode | null {
	if (bits.length !== CODE_BITS) return null;
	const payload = bits.slice(0, TIME_BITS + SEQ_BITS);
	if (crc16(payload) !== fromBits(bits.slice(TIME_BITS + SEQ_BITS))) return null;
	return { timeMs: unwrapTime(fromBits(bits.slice(0, TIME_BITS)), nowMs), seq: fromBits(bits.slice(TIME_BITS, TIME_BITS + SEQ_BITS)) };
}

/** Paints the code into the luma plane of a frame (stride = width). */
export function drawTimecode(luma: Uint8Array, width: number, height: number, code: Timecode): void {
	const l = layout(width, height);
	const bits = encodeBits(code);
	for (let i = 0; i < bits.length; i++) {
		const { x, y } = l.origin(i);
		const v = bits[i] ? WHITE : BLACK;
		for (let row = y; row < y + l.block; row++) luma.fill(v, row * width + x, row * width + x + l.block);
	}
}

/**
 * Reads the code back from any picture, given a luma sampler: averages the
 * centre half of each block (edges smear under compression and scaling).
 */
export function readTimecode(
	lumaAt: (x: number, y: number) => number,
	width: number,
	height: number,
	nowMs: number = Date.now(),
): Timecode | null {
	const l = layout(width, height);
	const bits: number[] = [];
	const q = Math.max(1, Math.floor(l.block / 4));
	const step = Math.max(1, Math.floor(l.block / 8));
	for (let i = 0; i < CODE_BITS; i++) {
		const { x, y } = l.origin(i);
		let sum = 0;
		let n = 0;
		for (let yy = y + q; yy < y + l.block - q; yy += step) {
			for (let xx = x + q; xx < x + l.block - q; xx += step) {
				sum += lumaAt(xx, yy);
				n++;
			}
		}
		bits.push(sum / n > (BLACK + WHITE) / 2 ? 1 : 0);
	}
	return decodeBits(bits, nowMs);
}

/** readTimecode over a plain luma plane. */
export function readTimecodeFromLuma(luma: Uint8Array, width: number, height: number, nowMs: number = Date.now()): Timecode | null {
	return readTimecode((x, y) => luma[y * width + x] ?? 0, width, height, nowMs);
}

/**
 * A moving background, so the encoder works as hard as on real content and
 * the bitrate is realistic: smooth diagonal bands that scroll every frame.
 */
export class Background {
	readonly #pattern: Uint8Array;
	readonly #width: number;
	readonly #height: number;

	constructor(width: number, height: number) {
		this.#width = width;
		this.#height = height;
		// Tall enough to scroll one line per frame for a while, then wrap.
		this.#pattern = new Uint8Array(width * (height + 256));
		for (let y = 0; y < height + 256; y++) {
			for (let x = 0; x < width; x++) {
				const v = 128 + 60 * Math.sin((x + y) / 23) + 40 * Math.sin((x - 2 * y) / 57) + ((x * 7 + y * 13) % 17);
				this.#pattern[y * width + x] = Math.max(16, Math.min(235, Math.round(v)));
			}
		}
	}

	/** Copies frame n's background into the luma plane. */
	fill(luma: Uint8Array, n: number): void {
		const offset = (n % 256) * this.#width;
		luma.set(this.#pattern.subarray(offset, offset + this.#width * this.#height));
	}
}
