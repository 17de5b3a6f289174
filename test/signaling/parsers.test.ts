import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { H264Depacketizer, OggOpusWriter, opusPacketSamples } from '../../client/node/depacketize.js';
import { startsH264Keyframe } from '../../client/node/h264.js';
import { buildRemoteOffer, dtlsParametersFromAnswer } from '../../client/node/sdp.js';
import { NODE_RTP_CAPABILITIES } from '../../client/node/viewer.js';
import { BadRequest } from '../../server/common/errors.js';
import { capabilitiesCover, describeMissingCodec, h264ProfileName } from '../../signaling/codec-support.js';
import { TokenBucket } from '../../signaling/rate-limit.js';
import { parseRequest } from '../../signaling/schemas.js';
import { REQUESTS } from '../../client/shared/protocol.js';
import type { CreateTransportResult } from '../../client/shared/protocol.js';

const nal = (type: number, size: number): Buffer => {
	const b = randomBytes(size);
	b[0] = 0x60 | type;
	return b;
};
const annexB = (nals: Buffer[]): Buffer => Buffer.concat(nals.flatMap((n) => [Buffer.from([0, 0, 0, 1]), n]));
const AUD = Buffer.from([0, 0, 0, 1, 0x09, 0xf0]);

describe('H.264 depacketizer', () => {
	it('rebuilds single NAL units, STAP-A and FU-A as Annex B', () => {
		const sps = nal(7, 12);
		const pps = nal(8, 4);
		const idr = nal(5, 3000);
		const stap = Buffer.concat([Buffer.from([0x78]), ...[sps, pps].flatMap((n) => [Buffer.from([n.length >> 8, n.length & 0xff]), n])]);
		const fuIndicator = (idr[0]! & 0xe0) | 28;
		const body = idr.subarray(1);
		const fus: Buffer[] = [];
		for (let off = 0; off < body.length; off += 1000) {
			const start = off === 0 ? 0x80 : 0;
			const end = off + 1000 >= body.length ? 0x40 : 0;
			fus.push(Buffer.concat([Buffer.from([fuIndicator, start | end | 5]), body.subarray(off, off + 1000)]));
		}
		const d = new H264Depacketizer();
		const out: Buffer[] = [];
		let seq = 65534; // wraps
		out.push(...d.push(stap, seq++ & 0xffff, false));
		fus.forEach((p, i) => out.push(...d.push(p, seq++ & 0xffff, i === fus.length - 1)));
		const p = nal(1, 500);
		out.push(...d.push(p, seq++ & 0xffff, true));
		expect(Buffer.concat(out)).toEqual(Buffer.concat([annexB([sps, pps, idr]), AUD, annexB([p]), AUD]));
		expect(d.dropped).toBe(0);
	});

	it('drops a fragmented NAL unit with a hole in it', () => {
		const d = new H264Depacketizer();
		expect(d.push(Buffer.from([0x7c, 0x85, 1, 2]), 10, false)).toEqual([]);
		expect(d.push(Buffer.from([0x7c, 0x05, 3, 4]), 12, false)).toEqual([]);
		expect(d.push(Buffer.from([0x7c, 0x45, 5, 6]), 13, true)).toEqual([AUD]);
		expect(d.dropped).toBe(1);
	});

	it('fuzz: never throws on random payloads', () => {
		const d = new H264Depacketizer();
		for (let i = 0; i < 20_000; i++) {
			const b = randomBytes(Math.floor(Math.random() * 64));
			d.push(b, i & 0xffff, (i & 7) === 0);
			startsH264Keyframe(b);
		}
	});

	it('recognises keyframe starts', () => {
		expect(startsH264Keyframe(Buffer.from([0x65, 1]))).toBe(true);
		expect(startsH264Keyframe(Buffer.from([0x67, 1]))).toBe(true);
		expect(startsH264Keyframe(Buffer.from([0x61, 1]))).toBe(false);
		expect(startsH264Keyframe(Buffer.from([0x7c, 0x85]))).toBe(true);
		expect(startsH264Keyframe(Buffer.from([0x7c, 0x05]))).toBe(false);
		expect(startsH264Keyframe(Buffer.from([0x7c, 0x81]))).toBe(false);
		expect(startsH264Keyframe(Buffer.from([0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 1]))).toBe(true);
		expect(startsH264Keyframe(Buffer.from([0x78, 0, 2, 0x61, 1]))).toBe(false);
		expect(startsH264Keyframe(Buffer.alloc(0))).toBe(false);
	});
});

/** Ogg's CRC-32 bit by bit (polynomial 0x04c11db7, MSB first, no final xor): the writer uses a table. */
function referenceOggCrc(buf: Buffer): number {
	let crc = 0;
	for (const byte of buf) {
		crc ^= byte << 24;
		for (let i = 0; i < 8; i++) crc = crc & 0x80000000 ? ((crc << 1) ^ 0x04c11db7) >>> 0 : (crc << 1) >>> 0;
	}
	return crc >>> 0;
}

describe('Ogg Opus writer', () => {
	it('counts samples from the TOC byte', () => {
		expect(opusPacketSamples(Buffer.from([(31 << 3) | 0]))).toBe(960); // CELT 20 ms
		expect(opusPacketSamples(Buffer.from([(28 << 3) | 0]))).toBe(120); // CELT 2.5 ms
		expect(opusPacketSamples(Buffer.from([(3 << 3) | 0]))).toBe(2880); // SILK 60 ms
		expect(opusPacketSamples(Buffer.from([(15 << 3) | 1]))).toBe(1920); // hybrid 20 ms, two frames
		expect(opusPacketSamples(Buffer.from([(31 << 3) | 3, 3]))).toBe(2880); // three CELT 20 ms frames
		expect(opusPacketSamples(Buffer.alloc(0))).toBe(0);
	});

	it('writes header pages, then pages with valid CRCs and growing granule positions', () => {
		const w = new OggOpusWriter();
		const pages = [...w.push(Buffer.from([(31 << 3) | 0, 1, 2, 3])), ...w.push(Buffer.concat([Buffer.from([(31 << 3) | 0]), randomBytes(600)]))];
		expect(pages).toHaveLength(4);
		expect(pages[0]!.subarray(28, 36).toString('latin1')).toBe('OpusHead');
		expect(pages[0]![5]).toBe(0x02);
		expect(pages[1]!.subarray(28, 36).toString('latin1')).toBe('OpusTags');
		expect(pages[2]!.readBigUInt64LE(6)).toBe(960n);
		expect(pages[3]!.readBigUInt64LE(6)).toBe(1920n);
		// 600 + 1 bytes need lacing values 255, 255, 91.
		expect([...pages[3]!.subarray(27, 30)]).toEqual([255, 255, 91]);
		for (const [i, p] of pages.entries()) {
			expect(p.subarray(0, 4).toString('latin1')).toBe('OggS');
			expect(p.readUInt32LE(18)).toBe(i);
			const copy = Buffer.from(p);
			copy.writeUInt32LE(0, 22);
			expect(p.readUInt32LE(22)).toBe(referenceOggCrc(copy));
		}
	});
});

describe('codec support messages', () => {
	it('names H.264 profiles', () => {
		expect(h264ProfileName('42e01f')).toBe('Constrained Baseline');
		expect(h264ProfileName('42c01e')).toBe('Constrained Baseline');
		expect(h264ProfileName('42001f')).toBe('Baseline');
		expect(h264ProfileName('4d001f')).toBe('Main');
		expect(h264ProfileName('640032')).toBe('High');
		expect(h264ProfileName('f4001f')).toBe('Predictive High 4:4:4');
		expect(h264ProfileName('zz')).toBeNull();
		expect(h264ProfileName('ff0000')).toBeNull();
	});

	it('tells what a client lacks', () => {
		const baseline = { mimeType: 'video/H264', payloadType: 102, clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f' } };
		const high = { ...baseline, parameters: { 'packetization-mode': 1, 'profile-level-id': '640032' } };
		expect(capabilitiesCover(baseline, NODE_RTP_CAPABILITIES)).toBe(true);
		const chromium = { codecs: NODE_RTP_CAPABILITIES.codecs!.filter((c) => c.parameters?.['profile-level-id'] !== '640032') };
		expect(capabilitiesCover(high, chromium)).toBe(false);
		expect(describeMissingCodec(high, chromium)).toMatch(/H\.264 High \(profile-level-id 640032\).*42e01f \(Constrained Baseline\)/);
		expect(describeMissingCodec(baseline, { codecs: [] })).toMatch(/cannot receive H\.264 at all/);
		const opus = { mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 };
		expect(capabilitiesCover(opus, NODE_RTP_CAPABILITIES)).toBe(true);
		expect(describeMissingCodec(opus, { codecs: [] })).toBe('this client cannot receive audio/opus/48000/2');
	});
});

describe('request schemas', () => {
	it('fuzz: random values either parse or fail with BadRequest', () => {
		const pick = <T>(a: readonly T[]): T => a[Math.floor(Math.random() * a.length)]!;
		const value = (depth: number): unknown => {
			const r = Math.random();
			if (depth > 4 || r < 0.1) return pick([null, undefined, 0, -1, 1e300, NaN, '', 'x', true, 'sha-256', 'video', 'AB:CD']);
			if (r < 0.3) return randomBytes(8).toString('hex');
			if (r < 0.5) return Array.from({ length: Math.floor(Math.random() * 5) }, () => value(depth + 1));
			const o: Record<string, unknown> = {};
			for (let i = Math.floor(Math.random() * 5); i > 0; i--) {
				o[pick(['stream', 'token', 'transportId', 'dtlsParameters', 'fingerprints', 'algorithm', 'value', 'rtpCapabilities', 'codecs', 'kind', 'mimeType', 'clockRate', 'consumerId', '__proto__', 'constructor'])] = value(depth + 1);
			}
			return o;
		};
		let parsed = 0;
		for (let i = 0; i < 20_000; i++) {
			const name = pick(REQUESTS);
			try {
				parseRequest(name, value(0));
				parsed++;
			} catch (err) {
				expect(err).toBeInstanceOf(BadRequest);
				expect((err as Error).message.length).toBeLessThan(2000);
			}
		}
		expect(parsed).toBeGreaterThan(0);
	});
});

describe('token bucket', () => {
	it('allows a burst, then the rate', () => {
		let now = 0;
		const b = new TokenBucket(10, 20, () => now);
		let ok = 0;
		for (let i = 0; i < 50; i++) if (b.take()) ok++;
		expect(ok).toBe(20);
		now += 500;
		ok = 0;
		for (let i = 0; i < 50; i++) if (b.take()) ok++;
		expect(ok).toBe(5);
		now += 100_000;
		ok = 0;
		for (let i = 0; i < 50; i++) if (b.take()) ok++;
		expect(ok).toBe(20);
	});
});

describe('remote SDP for the Node viewer', () => {
	const transport: CreateTransportResult = {
		id: 't',
		iceParameters: { usernameFragment: 'ufrag', password: 'pwd', iceLite: true },
		iceCandidates: [{ foundation: 'udpcandidate', priority: 1076302079, address: '10.0.0.1', ip: '10.0.0.1', protocol: 'udp', port: 40000, type: 'host' }],
		dtlsParameters: { role: 'auto', fingerprints: [{ algorithm: 'sha-256', value: 'AA:BB' }] },
		connectTimeoutMs: 30000,
	};

	it('offers one m-section per consumer, ice-lite, actpass, with the consumer SSRC', () => {
		const consumer = {
			id: 'c1',
			producerId: 'p1',
			kind: 'video' as const,
			paused: true,
			rtpParameters: {
				codecs: [{ mimeType: 'video/H264', payloadType: 103, clockRate: 90000, parameters: { 'packetization-mode': 1 }, rtcpFeedback: [{ type: 'nack', parameter: 'pli' }] }],
				encodings: [{ ssrc: 1234 }],
				rtcp: { cname: 'abc' },
			},
		};
		const sdp = buildRemoteOffer(transport, [{ mid: '0', kind: 'video', consumer, codec: consumer.rtpParameters.codecs[0]! }], 2);
		for (const line of [
			'a=ice-lite',
			'a=fingerprint:sha-256 AA:BB',
			'a=group:BUNDLE 0',
			'm=video 7 UDP/TLS/RTP/SAVPF 103',
			'a=setup:actpass',
			'a=candidate:udpcandidate 1 udp 1076302079 10.0.0.1 40000 typ host',
			'a=rtpmap:103 H264/90000',
			'a=fmtp:103 packetization-mode=1',
			'a=rtcp-fb:103 nack pli',
			'a=ssrc:1234 cname:abc',
			'a=sendonly',
		]) {
			expect(sdp).toContain(`${line}\r\n`);
		}
		const idle = buildRemoteOffer(transport, [{ mid: '0', kind: 'video', consumer: null, codec: consumer.rtpParameters.codecs[0]! }], 3);
		expect(idle).toContain('a=inactive\r\n');
		expect(idle).not.toContain('a=ssrc:');
	});

	it('reads our DTLS role and fingerprint from the answer', () => {
		expect(dtlsParametersFromAnswer('v=0\r\na=fingerprint:SHA-256 01:02\r\na=setup:active\r\n')).toEqual({
			role: 'client',
			fingerprints: [{ algorithm: 'sha-256', value: '01:02' }],
		});
		expect(dtlsParametersFromAnswer('a=fingerprint:sha-256 01\r\na=setup:passive\r\n').role).toBe('server');
		expect(() => dtlsParametersFromAnswer('v=0\r\n')).toThrow(/fingerprint/);
	});
});
