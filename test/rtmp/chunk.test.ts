import { describe, expect, it } from 'vitest';
import { ChunkReader, ChunkWriter, basicHeader } from '../../ingest/rtmp/chunk.js';
import type { RtmpMessage } from '../../ingest/rtmp/chunk.js';
import { TimestampUnwrapper } from '../../ingest/rtmp/connection.js';
import { BadRequest, LimitExceeded } from '../../server/common/errors.js';
import { mutate, prng } from './prng.js';
import { encodeChunks } from './rtmp-client.js';

const OPTS = { maxMessageSize: 1024 * 1024, maxChunkStreams: 64, maxPendingBytes: 2 * 1024 * 1024 };

function collect(opts = OPTS): { reader: ChunkReader; out: RtmpMessage[] } {
	const out: RtmpMessage[] = [];
	const reader = new ChunkReader(opts, (m) => out.push({ ...m, payload: Buffer.from(m.payload) }));
	return { reader, out };
}

function payload(n: number, seed = n): Buffer {
	return prng(seed).bytes(n);
}

describe('chunk stream reader', () => {
	it('reassembles messages split into chunks of the default size', () => {
		const { reader, out } = collect();
		const p = payload(1000);
		reader.push(encodeChunks(9, 1, p, 128, { csid: 6, timestamp: 40 }));
		expect(out).toHaveLength(1);
		expect(out[0]).toMatchObject({ csid: 6, type: 9, streamId: 1, timestamp: 40 });
		expect(out[0]!.payload.equals(p)).toBe(true);
	});

	it('follows header types 1, 2 and 3 with timestamp deltas', () => {
		const { reader, out } = collect();
		const a = payload(300, 1);
		const b = payload(300, 2);
		const c = payload(200, 3);
		const d = payload(200, 4);
		reader.push(
			Buffer.concat([
				encodeChunks(9, 1, a, 128, { csid: 6, fmt: 0, timestamp: 1000 }),
				encodeChunks(9, 1, b, 128, { csid: 6, fmt: 2, timestamp: 33 }),
				encodeChunks(9, 1, c, 128, { csid: 6, fmt: 1, timestamp: 34 }),
				encodeChunks(9, 1, d, 128, { csid: 6, fmt: 3 }),
			]),
		);
		expect(out.map((m) => m.timestamp)).toEqual([1000, 1033, 1067, 1101]);
		expect(out.map((m) => m.payload.length)).toEqual([300, 300, 200, 200]);
		expect(out.every((m) => m.streamId === 1 && m.type === 9)).toBe(true);
		expect(out[3]!.payload.equals(d)).toBe(true);
	});

	it('takes a type 3 new message after a type 0 as repeating its timestamp as the delta', () => {
		const { reader, out } = collect();
		reader.push(
			Buffer.concat([
				encodeChunks(8, 1, payload(10), 128, { csid: 4, fmt: 0, timestamp: 23 }),
				encodeChunks(8, 1, payload(10), 128, { csid: 4, fmt: 3 }),
			]),
		);
		expect(out.map((m) => m.timestamp)).toEqual([23, 46]);
	});

	it('decodes 1-, 2- and 3-byte basic headers (chunk stream ids 2..65599)', () => {
		const { reader, out } = collect();
		const ids = [2, 3, 63, 64, 65, 319, 320, 321, 1000, 65599];
		reader.push(Buffer.concat(ids.map((csid, i) => encodeChunks(20, 0, payload(200, i), 128, { csid }))));
		expect(out.map((m) => m.csid)).toEqual(ids);
		expect(basicHeader(0, 63)).toHaveLength(1);
		expect(basicHeader(0, 64)).toHaveLength(2);
		expect(basicHeader(0, 320)).toHaveLength(3);
		expect(() => basicHeader(0, 65600)).toThrow(RangeError);
	});

	it('interleaves chunks of several chunk streams', () => {
		const { reader, out } = collect();
		const v = encodeChunks(9, 1, payload(256, 9), 128, { csid: 6, timestamp: 5 });
		const a = encodeChunks(8, 1, payload(256, 8), 128, { csid: 4, timestamp: 7 });
		// v = [hdr12 + 128][hdr1 + 128], a likewise: send v0 a0 v1 a1.
		reader.push(Buffer.concat([v.subarray(0, 140), a.subarray(0, 140), v.subarray(140), a.subarray(140)]));
		expect(out.map((m) => [m.csid, m.timestamp])).toEqual([
			[6, 5],
			[4, 7],
		]);
		expect(out[0]!.payload.equals(payload(256, 9))).toBe(true);
		expect(out[1]!.payload.equals(payload(256, 8))).toBe(true);
	});

	it('reads extended timestamps, repeated on continuation chunks or not', () => {
		for (const repeat of [true, false]) {
			const { reader, out } = collect();
			const p = payload(500);
			reader.push(encodeChunks(9, 1, p, 128, { csid: 6, timestamp: 0x01020304, extendedOnContinuation: repeat }));
			reader.push(encodeChunks(9, 1, p, 128, { csid: 6, fmt: 2, timestamp: 0xffffff + 5, extendedOnContinuation: repeat }));
			reader.push(encodeChunks(9, 1, p, 128, { csid: 6, fmt: 3, timestamp: 0xffffff + 5 }));
			expect(out.map((m) => m.timestamp)).toEqual([0x01020304, (0x01020304 + 0xffffff + 5) >>> 0, (0x01020304 + 2 * (0xffffff + 5)) >>> 0]);
			for (const m of out) expect(m.payload.equals(p)).toBe(true);
		}
	});

	it('wraps message timestamps at 32 bits, and the unwrapper makes them continuous', () => {
		const { reader, out } = collect();
		reader.push(encodeChunks(9, 1, payload(5), 128, { csid: 6, timestamp: 0xffffffe0 }));
		reader.push(encodeChunks(9, 1, payload(5), 128, { csid: 6, fmt: 2, timestamp: 0x40 }));
		expect(out.map((m) => m.timestamp)).toEqual([0xffffffe0, 0x20]);
		const u = new TimestampUnwrapper();
		expect(out.map((m) => u.unwrap(m.timestamp))).toEqual([0xffffffe0, 0x100000020]);
		// Small steps back (audio before video) stay small.
		expect(u.unwrap(0x10)).toBe(0x100000010);
		expect(u.unwrap(0x30)).toBe(0x100000030);
	});

	it('applies a new chunk size from the next chunk, also within one read', () => {
		const out: RtmpMessage[] = [];
		const reader = new ChunkReader(OPTS, (m) => {
			out.push({ ...m, payload: Buffer.from(m.payload) });
			if (m.type === 1) reader.setChunkSize(m.payload.readUInt32BE(0));
		});
		const size = Buffer.alloc(4);
		size.writeUInt32BE(4096);
		const big = payload(10_000);
		reader.push(Buffer.concat([encodeChunks(1, 0, size, 128, { csid: 2 }), encodeChunks(9, 1, big, 4096, { csid: 6 })]));
		expect(out).toHaveLength(2);
		expect(out[1]!.payload.equals(big)).toBe(true);
		expect(reader.chunkSize).toBe(4096);
		expect(() => reader.setChunkSize(0)).toThrow(BadRequest);
		expect(() => reader.setChunkSize(0x80000000)).toThrow(BadRequest);
	});

	it('handles chunk size 1 and a chunk size larger than any message', () => {
		for (const size of [1, 0x7fffffff]) {
			const { reader, out } = collect();
			reader.setChunkSize(size);
			const p = payload(3000);
			const bytes = encodeChunks(9, 1, p, size, { csid: 6, timestamp: 0xffffff + 1 });
			// Fed in odd pieces.
			for (let i = 0; i < bytes.length; i += 777) reader.push(bytes.subarray(i, i + 777));
			expect(out).toHaveLength(1);
			expect(out[0]!.payload.equals(p)).toBe(true);
			expect(out[0]!.timestamp).toBe(0xffffff + 1);
		}
	});

	it('drops the partial message of an aborted chunk stream', () => {
		const { reader, out } = collect();
		const first = encodeChunks(9, 1, payload(300, 1), 128, { csid: 6, timestamp: 10 });
		reader.push(first.subarray(0, 12 + 128)); // first chunk only
		expect(reader.pendingBytes).toBe(300);
		reader.abort(6);
		expect(reader.pendingBytes).toBe(0);
		reader.push(encodeChunks(9, 1, payload(50, 2), 128, { csid: 6, fmt: 1, timestamp: 20 }));
		expect(out).toHaveLength(1);
		expect(out[0]!.payload.equals(payload(50, 2))).toBe(true);
		expect(out[0]!.timestamp).toBe(30);
		expect(reader.stats.abortedMessages).toBe(1);
	});

	it('delivers zero-length messages', () => {
		const { reader, out } = collect();
		reader.push(encodeChunks(20, 0, Buffer.alloc(0), 128, { csid: 3 }));
		reader.push(encodeChunks(20, 0, Buffer.from('x'), 128, { csid: 3 }));
		expect(out.map((m) => m.payload.length)).toEqual([0, 1]);
	});

	it('refuses a message header over the size limit before buffering it', () => {
		const { reader } = collect({ ...OPTS, maxMessageSize: 1000 });
		const hdr = encodeChunks(9, 1, Buffer.alloc(1001), 128, { csid: 6 }).subarray(0, 12);
		expect(() => reader.push(hdr)).toThrow(LimitExceeded);
	});

	it('bounds chunk streams and bytes in reassembly', () => {
		const { reader } = collect({ ...OPTS, maxChunkStreams: 4 });
		for (const csid of [2, 3, 4, 5]) reader.push(encodeChunks(20, 0, Buffer.from('x'), 128, { csid }));
		expect(() => reader.push(encodeChunks(20, 0, Buffer.from('x'), 128, { csid: 6 }))).toThrow(/chunk streams/);
		const r2 = collect({ ...OPTS, maxMessageSize: 1000, maxPendingBytes: 1500 }).reader;
		r2.push(encodeChunks(9, 1, Buffer.alloc(1000), 128, { csid: 6 }).subarray(0, 12 + 128));
		expect(() => r2.push(encodeChunks(8, 1, Buffer.alloc(1000), 128, { csid: 4 }).subarray(0, 20))).toThrow(/reassembly/);
	});

	it('refuses type 2 and 3 chunks on a chunk stream with no header yet', () => {
		expect(() => collect().reader.push(Buffer.from([0x80 | 5, 0, 0, 1]))).toThrow(BadRequest);
		expect(() => collect().reader.push(Buffer.from([0xc0 | 5, 1]))).toThrow(BadRequest);
	});

	it('stops in the middle of a read when asked from the message callback', () => {
		let n = 0;
		const reader = new ChunkReader(OPTS, () => {
			n++;
			reader.stop();
		});
		reader.push(Buffer.concat([encodeChunks(20, 0, Buffer.from('a'), 128), encodeChunks(20, 0, Buffer.from('b'), 128)]));
		expect(n).toBe(1);
	});

	it('writer output reads back, with extended timestamps on every chunk', () => {
		const w = new ChunkWriter();
		w.setChunkSize(100);
		const p = payload(1000);
		const bytes = w.encode(500, 20, 1, 0x1000000, p);
		const { reader, out } = collect();
		reader.setChunkSize(100);
		reader.push(bytes);
		expect(out).toHaveLength(1);
		expect(out[0]!.timestamp).toBe(0x1000000);
		expect(out[0]!.payload.equals(p)).toBe(true);
		// 10 chunks: a type 0 header (3-byte basic header + 11 + 4) and 9 continuation headers (3 + 4).
		expect(bytes.length).toBe(1000 + 18 + 9 * 7);
	});

	it('fuzz: any split of a valid stream gives the same messages', () => {
		const r = prng(7);
		const msgs = Array.from({ length: 30 }, (_, i) => ({ csid: [3, 4, 6, 70, 400][i % 5]!, p: payload(1 + r.int(3000), i), ts: r.int(0x2000000) }));
		const stream = Buffer.concat(msgs.map((m) => encodeChunks(9, 1, m.p, 128, { csid: m.csid, timestamp: m.ts })));
		for (let round = 0; round < 200; round++) {
			const { reader, out } = collect();
			let off = 0;
			while (off < stream.length) {
				const n = 1 + r.int(round % 2 ? 20 : 5000);
				reader.push(stream.subarray(off, off + n));
				off += n;
			}
			expect(out.length).toBe(msgs.length);
			out.forEach((m, i) => {
				expect(m.payload.equals(msgs[i]!.p)).toBe(true);
				expect(m.timestamp).toBe(msgs[i]!.ts);
			});
		}
	});

	it('fuzz: mutated and random streams only ever throw BadRequest or LimitExceeded', () => {
		const r = prng(99);
		const base = Buffer.concat([
			encodeChunks(1, 0, Buffer.from([0, 0, 16, 0]), 128, { csid: 2 }),
			encodeChunks(20, 0, payload(400), 4096, { csid: 3 }),
			encodeChunks(9, 1, payload(9000), 4096, { csid: 6, timestamp: 0xffffff + 9 }),
			encodeChunks(8, 1, payload(300), 4096, { csid: 4, timestamp: 5 }),
			encodeChunks(8, 1, payload(300), 4096, { csid: 4, fmt: 3 }),
		]);
		const deadline = Date.now() + 20_000;
		let cases = 0;
		for (let i = 0; i < 5000 && Date.now() < deadline; i++) {
			const input = i % 8 === 0 ? r.bytes(r.int(3000)) : mutate(base, r);
			const reader = new ChunkReader({ maxMessageSize: 64 * 1024, maxChunkStreams: 16, maxPendingBytes: 128 * 1024 }, (m) => {
				if (m.type === 1 && m.payload.length >= 4) reader.setChunkSize(m.payload.readUInt32BE(0));
				if (m.type === 2 && m.payload.length >= 4) reader.abort(m.payload.readUInt32BE(0));
			});
			cases++;
			try {
				for (let off = 0; off < input.length; ) {
					const n = 1 + r.int(2000);
					reader.push(input.subarray(off, off + n));
					off += n;
				}
				expect(reader.pendingBytes).toBeLessThanOrEqual(128 * 1024);
			} catch (err) {
				if (!(err instanceof BadRequest) && !(err instanceof LimitExceeded)) throw new Error(`case ${i}: ${String(err)}`);
			}
		}
		expect(cases).toBeGreaterThan(500);
	});
});
