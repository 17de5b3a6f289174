import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { SubsecondError } from '../../server/common/errors.js';
import { adtsHeader, buildAudioSpecificConfig, parseAudioSpecificConfig } from '../../server/core/codecs/audio.js';
import {
	NAL,
	buildAvcC,
	h264ConfigFromParameterSets,
	nalType,
	parseAvcC,
	parseSps,
	splitAnnexB,
	splitLengthPrefixed,
	toAnnexB,
	toLengthPrefixed,
	unescapeRbsp,
} from '../../server/core/codecs/h264.js';
import { FlvDemuxer } from '../../ingest/rtmp/flv.js';

/** Parameter sets as x264 writes them, for a given size and profile. */
function encode(width: number, height: number, profile: string, extra: string[] = []): Buffer[] {
	const res = spawnSync(
		'ffmpeg',
		[
			'-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', `testsrc2=size=${width}x${height}:rate=30:duration=0.1`,
			'-c:v', 'libx264', '-preset', 'superfast', '-profile:v', profile, '-pix_fmt', 'yuv420p', ...extra, '-f', 'h264', 'pipe:1',
		],
		{ maxBuffer: 64 * 1024 * 1024 },
	);
	expect(res.status).toBe(0);
	return splitAnnexB(res.stdout);
}

function seeded(seed: number): () => number {
	let s = seed >>> 0;
	return () => {
		s = (s * 1664525 + 1013904223) >>> 0;
		return s / 2 ** 32;
	};
}

describe('H.264 parameter sets from a real encoder', () => {
	it.each([
		[640, 360, 'baseline', 'Constrained Baseline'],
		[1280, 720, 'main', 'Main'],
		[1920, 1080, 'high', 'High'],
		[642, 362, 'high', 'High'],
		[176, 144, 'baseline', 'Constrained Baseline'],
	])('%ix%i %s', (w, h, profile, name) => {
		const nalus = encode(w, h, profile);
		const sps = nalus.find((n) => nalType(n) === NAL.SPS)!;
		const pps = nalus.find((n) => nalType(n) === NAL.PPS)!;
		const info = parseSps(sps);
		expect([info.width, info.height]).toEqual([w, h]);
		expect(info.profile).toBe(name);
		expect(info.fps).toBe(30);
		expect(info.profileLevelId).toBe(sps.subarray(1, 4).toString('hex'));
		const cfg = h264ConfigFromParameterSets([sps], [pps]);
		const rec = parseAvcC(cfg.avcC);
		expect(rec.nalLengthSize).toBe(4);
		expect(rec.sps[0]!.equals(sps)).toBe(true);
		expect(rec.pps[0]!.equals(pps)).toBe(true);
	});

	it('reads the reorder depth: 0 without B-frames, more with them', () => {
		const noB = encode(320, 240, 'main', ['-bf', '0']);
		const withB = encode(320, 240, 'high', ['-bf', '3']);
		const depth = (n: Buffer[]): number | null => parseSps(n.find((x) => nalType(x) === NAL.SPS)!).maxReorderFrames;
		expect(depth(noB)).toBe(0);
		expect(depth(withB)).toBeGreaterThan(0);
	});

	it('refuses 4:4:4 and 10-bit video clearly', () => {
		const nalus = encode(320, 240, 'high444', ['-pix_fmt', 'yuv444p']);
		const sps = nalus.find((n) => nalType(n) === NAL.SPS)!;
		const pps = nalus.find((n) => nalType(n) === NAL.PPS)!;
		expect(() => h264ConfigFromParameterSets([sps], [pps])).toThrow(/yuv420p/);
	});
});

describe('H.264 framing helpers', () => {
	it('round-trips Annex B and length prefixes', () => {
		const nalus = [Buffer.from([0x67, 1, 2, 3]), Buffer.from([0x68, 0, 0, 3, 1, 9]), Buffer.from([0x65, 0xff])];
		expect(splitAnnexB(toAnnexB(nalus))).toEqual(nalus);
		// Three-byte start codes and trailing zero bytes, as some encoders write them.
		expect(splitAnnexB(Buffer.from([0, 0, 1, 0x67, 5, 0, 0, 0, 0, 1, 0x68, 6]))).toEqual([Buffer.from([0x67, 5]), Buffer.from([0x68, 6])]);
		expect(splitLengthPrefixed(toLengthPrefixed(nalus), 4)).toEqual(nalus);
		expect(unescapeRbsp(Buffer.from([0, 0, 3, 1, 0, 0, 3]))).toEqual(Buffer.from([0, 0, 1, 0, 0]));
		expect(() => splitLengthPrefixed(Buffer.from([0, 0, 0, 9, 1]), 4)).toThrow(/overruns/);
	});

	it('builds an avcC that parses back', () => {
		const nalus = encode(320, 240, 'high');
		const sps = nalus.filter((n) => nalType(n) === NAL.SPS);
		const pps = nalus.filter((n) => nalType(n) === NAL.PPS);
		const rec = parseAvcC(buildAvcC(sps, pps));
		expect(rec.profileIdc).toBe(100);
		expect(rec.sps).toEqual(sps);
	});
});

describe('AAC', () => {
	it('parses AudioSpecificConfig and writes ADTS', () => {
		const asc = buildAudioSpecificConfig(48000, 2);
		const cfg = parseAudioSpecificConfig(asc);
		expect(cfg).toMatchObject({ objectType: 2, sampleRate: 48000, channels: 2, samplesPerFrame: 1024 });
		const h = adtsHeader(cfg, 100);
		expect(h.length).toBe(7);
		expect(h.readUInt16BE(0) & 0xfff6).toBe(0xfff0);
		expect(((h[3]! & 3) << 11) | (h[4]! << 3) | (h[5]! >> 5)).toBe(107);
		expect(parseAudioSpecificConfig(Buffer.from([0x12, 0x10]))).toMatchObject({ sampleRate: 44100, channels: 2 });
		expect(parseAudioSpecificConfig(Buffer.from([0x13, 0x88])).sampleRate).toBe(22050);
		expect(() => parseAudioSpecificConfig(Buffer.from([0x12, 0x00]))).toThrow(/channel configuration 0/);
	});
});

describe('parsers under fuzz', () => {
	// Every parser must reject garbage with our own errors, never crash with
	// a TypeError or RangeError or loop forever.
	const parsers: [string, (b: Buffer) => unknown][] = [
		['parseSps', (b) => parseSps(Buffer.concat([Buffer.from([0x67]), b]))],
		['parseAvcC', (b) => parseAvcC(Buffer.concat([Buffer.from([1]), b]))],
		['parseAudioSpecificConfig', (b) => parseAudioSpecificConfig(b)],
		['splitLengthPrefixed', (b) => splitLengthPrefixed(b, 4)],
		['splitAnnexB', (b) => splitAnnexB(b)],
		['FlvDemuxer.video', (b) => new FlvDemuxer().video(0, b, 0)],
		['FlvDemuxer.audio', (b) => new FlvDemuxer().audio(0, b, 0)],
	];
	it.each(parsers)('%s', (_name, parse) => {
		const rand = seeded(42);
		const real = encode(320, 240, 'high');
		const sps = real.find((n) => nalType(n) === NAL.SPS)!;
		for (let i = 0; i < 3000; i++) {
			let buf: Buffer;
			if (i % 2 === 0) {
				buf = Buffer.from(Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256)));
			} else {
				// Mutations of a real SPS reach deeper into the parser.
				buf = Buffer.from(sps.subarray(1, Math.max(1, Math.floor(rand() * sps.length))));
				for (let k = 0; k < 3; k++) buf[Math.floor(rand() * buf.length)] = Math.floor(rand() * 256);
			}
			try {
				parse(buf);
			} catch (err) {
				if (!(err instanceof SubsecondError)) throw new Error(`input ${buf.toString('hex')} threw ${String(err)}`);
			}
		}
	});
});
