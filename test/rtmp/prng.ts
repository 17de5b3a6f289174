/** A seeded PRNG (mulberry32), so a failing fuzz case can be replayed from its seed. */
export function prng(seed: number): { next: () => number; int: (n: number) => number; bytes: (n: number) => Buffer } {
	let a = seed >>> 0;
	const next = (): number => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
	const int = (n: number): number => Math.floor(next() * n);
	const bytes = (n: number): Buffer => {
		const b = Buffer.allocUnsafe(n);
		for (let i = 0; i < n; i++) b[i] = int(256);
		return b;
	};
	return { next, int, bytes };
}

/** One random mutation of `input`: bit flips, byte changes, inserted or deleted ranges, truncation. */
export function mutate(input: Buffer, r: ReturnType<typeof prng>): Buffer {
	const b = Buffer.from(input);
	const kind = r.int(6);
	if (b.length === 0) return r.bytes(1 + r.int(64));
	switch (kind) {
		case 0: {
			const n = 1 + r.int(8);
			for (let i = 0; i < n; i++) {
				const pos = r.int(b.length);
				b[pos] = b[pos]! ^ (1 << r.int(8));
			}
			return b;
		}
		case 1: {
			const n = 1 + r.int(8);
			for (let i = 0; i < n; i++) b[r.int(b.length)] = r.int(256);
			return b;
		}
		case 2: {
			const pos = r.int(b.length);
			return Buffer.concat([b.subarray(0, pos), r.bytes(1 + r.int(256)), b.subarray(pos)]);
		}
		case 3: {
			const pos = r.int(b.length);
			const len = 1 + r.int(Math.min(512, b.length - pos));
			return Buffer.concat([b.subarray(0, pos), b.subarray(pos + len)]);
		}
		case 4: {
			// Interesting values where lengths and timestamps live.
			const pos = r.int(b.length);
			const v = [0x00, 0xff, 0x7f, 0x80, 0x01][r.int(5)]!;
			for (let i = 0; i < 1 + r.int(4) && pos + i < b.length; i++) b[pos + i] = v;
			return b;
		}
		default:
			return b.subarray(0, r.int(b.length));
	}
}
