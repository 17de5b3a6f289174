import { ffmpegFilter } from '../helpers/ffmpeg.js';
import { describe, expect, it } from 'vitest';
import { PROBE_DEFAULTS, probeEncoderArgs } from '../../bench/probe/publisher.js';
import { Background, CODE_BITS, decodeBits, drawTimecode, encodeBits, readTimecodeFromLuma } from '../../bench/probe/timecode.js';


describe('latency probe timecode', () => {
	it('encodes and decodes bits with a CRC that catches flips', () => {
		const code = { timeMs: 1_795_000_000_123, seq: 4242 };
		const bits = encodeBits(code);
		expect(bits.length).toBe(CODE_BITS);
		// The low 40 bits of the time travel; the reader's clock restores the rest.
		expect(decodeBits(bits, code.timeMs + 250)).toEqual(code);
		expect(decodeBits(bits, code.timeMs - 3_600_000)).toEqual(code);
		for (let i = 0; i < bits.length; i++) {
			const flipped = [...bits];
			flipped[i] = flipped[i] ? 0 : 1;
			expect(decodeBits(flipped, code.timeMs)).toBeNull();
			// Two flips as well: a 16-bit CRC catches every double error in 80 bits.
			for (let j = i + 1; j < bits.length; j++) {
				const twice = [...flipped];
				twice[j] = twice[j] ? 0 : 1;
				expect(decodeBits(twice, code.timeMs)).toBeNull();
			}
		}
	});

	it('survives a round trip through libx264 at the benchmark bitrate', async () => {
		const { width, height, fps } = PROBE_DEFAULTS;
		const frames = 45;
		const ySize = width * height;
		const bg = new Background(width, height);
		const raw = Buffer.alloc((ySize * 3) / 2 * frames, 128);
		const base = 1_795_000_000_000;
		for (let n = 0; n < frames; n++) {
			const luma = raw.subarray((n * ySize * 3) / 2, (n * ySize * 3) / 2 + ySize);
			bg.fill(luma, n);
			drawTimecode(luma, width, height, { timeMs: base + n * 33, seq: n });
		}
		const h264 = await ffmpegFilter([...probeEncoderArgs(PROBE_DEFAULTS), '-f', 'h264', 'pipe:1'], raw);
		// Roughly the configured bitrate: the background makes the encoder work.
		const kbps = (h264.length * 8) / 1000 / (frames / fps);
		expect(kbps).toBeGreaterThan(PROBE_DEFAULTS.bitrateKbps * 0.3);
		const gray = await ffmpegFilter(['-f', 'h264', '-i', 'pipe:0', '-f', 'rawvideo', '-pix_fmt', 'gray', 'pipe:1'], h264);
		expect(gray.length).toBe(ySize * frames);
		for (let n = 0; n < frames; n++) {
			const code = readTimecodeFromLuma(gray.subarray(n * ySize, (n + 1) * ySize), width, height, base);
			expect(code).toEqual({ timeMs: base + n * 33, seq: n });
		}
	});
});
