import { BadRequest } from '../../common/errors.js';

/** MSB-first bit reader with Exp-Golomb, for SPS and AudioSpecificConfig. */
export class BitReader {
	readonly #buf: Buffer;
	#pos = 0; // in bits

	constructor(buf: Buffer) {
		this.#buf = buf;
	}

	get bitsLeft(): number {
		return this.#buf.length * 8 - this.#pos;
	}

	bit(): number {
		if (this.#pos >= this.#buf.length * 8) throw new BadRequest('bitstream ends early');
		const byte = this.#buf[this.#pos >> 3] ?? 0;
		const b = (byte >> (7 - (this.#pos & 7))) & 1;
		this.#pos++;
		return b;
	}

	bits(n: number): number {
		if (n > 32) throw new RangeError('at most 32 bits at once');
		let v = 0;
		for (let i = 0; i < n; i++) v = v * 2 + this.bit();
		return v;
	}

	skip(n: number): void {
		if (this.#pos + n > this.#buf.length * 8) throw new BadRequest('bitstream ends early');
		this.#pos += n;
	}

	/** Unsigned Exp-Golomb, ue(v). */
	ue(): number {
		let zeros = 0;
		while (this.bit() === 0) {
			if (++zeros > 31) throw new BadRequest('Exp-Golomb code too long');
		}
		return zeros === 0 ? 0 : 2 ** zeros - 1 + this.bits(zeros);
	}

	/** Signed Exp-Golomb, se(v). */
	se(): number {
		const k = this.ue();
		return k % 2 === 1 ? (k + 1) / 2 : -(k / 2);
	}
}
