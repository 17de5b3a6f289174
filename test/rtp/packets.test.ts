import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
	buildBye,
	buildPli,
	buildReceiverReport,
	buildRtp,
	buildSenderReport,
	findPli,
	looksLikeRtcp,
	ntpMiddle32,
	ntpToMs,
	parseRtcp,
	parseRtp,
} from '../../ingest/rtp/rtp.js';
import { buildSdp } from '../../ingest/rtp/sdp.js';
import { SessionDescription } from 'werift';

describe('RTP packets', () => {
	it('parses header fields, CSRCs, extensions and padding', () => {
		const payload = Buffer.from('hello world');
		const buf = buildRtp({
			payloadType: 96,
			marker: true,
			sequenceNumber: 65535,
			timestamp: 0xfffffff0,
			ssrc: 0xdeadbeef,
			payload,
			csrcs: [1, 2, 3],
			extension: Buffer.from([0x10, 0xaa, 0, 0]),
			padding: 3,
		});
		const r = parseRtp(buf);
		expect(r.ok).toBe(true);
		if (!r.ok) return;
		expect(r.value).toMatchObject({
			payloadType: 96,
			marker: true,
			sequenceNumber: 65535,
			timestamp: 0xfffffff0,
			ssrc: 0xdeadbeef,
			csrcCount: 3,
			extensionProfile: 0xbede,
			padding: 3,
		});
		expect(r.value.payload.equals(payload)).toBe(true);
	});

	it('refuses what does not add up, with a reason', () => {
		const good = buildRtp({ payloadType: 96, sequenceNumber: 1, timestamp: 1, ssrc: 1, payload: Buffer.alloc(4) });
		const cases: [Buffer, RegExp][] = [
			[good.subarray(0, 11), /shorter/],
			[Buffer.concat([Buffer.from([0x40]), good.subarray(1)]), /version 1/],
			[Buffer.concat([Buffer.from([0x8f]), good.subarray(1)]), /CSRC/],
			[Buffer.concat([Buffer.from([0x90]), good.subarray(1, 12), Buffer.from([0xbe, 0xde, 0x00, 0x09])]), /extension/],
			[Buffer.concat([Buffer.from([0x90]), good.subarray(1, 12), Buffer.from([0xbe])]), /extension/],
			[Buffer.concat([Buffer.from([0xa0]), good.subarray(1, 15), Buffer.from([0])]), /padding/],
			[Buffer.concat([Buffer.from([0xa0]), good.subarray(1, 15), Buffer.from([200])]), /padding/],
		];
		for (const [buf, reason] of cases) {
			const r = parseRtp(buf);
			expect(r.ok).toBe(false);
			if (!r.ok) expect(r.reason).toMatch(reason);
		}
	});

	it('tells RTCP from RTP on a muxed port (RFC 5761)', () => {
		expect(looksLikeRtcp(buildSenderReport({ ssrc: 1, ntpSeconds: 0, ntpFraction: 0, rtpTimestamp: 0, packetCount: 0, octetCount: 0 }))).toBe(true);
		expect(looksLikeRtcp(buildRtp({ payloadType: 96, marker: true, sequenceNumber: 1, timestamp: 1, ssrc: 1, payload: Buffer.alloc(1) }))).toBe(false);
		expect(looksLikeRtcp(buildRtp({ payloadType: 111, marker: true, sequenceNumber: 1, timestamp: 1, ssrc: 1, payload: Buffer.alloc(1) }))).toBe(false);
	});

	it('round-trips sender reports and BYE in compound packets', () => {
		const sr = buildSenderReport({ ssrc: 42, ntpSeconds: 3_900_000_000, ntpFraction: 0x80000000, rtpTimestamp: 123456, packetCount: 7, octetCount: 900 });
		const r = parseRtcp(Buffer.concat([sr, buildReceiverReport(5, 'x', null), buildBye([42, 43])]));
		expect(r.ok).toBe(true);
		if (!r.ok) return;
		expect(r.value[0]).toEqual({ type: 'sr', ssrc: 42, ntpSeconds: 3_900_000_000, ntpFraction: 0x80000000, rtpTimestamp: 123456, packetCount: 7, octetCount: 900 });
		expect(r.value.map((p) => p.type)).toEqual(['sr', 'other', 'other', 'bye']);
		expect(r.value[3]).toEqual({ type: 'bye', ssrcs: [42, 43] });
		expect(ntpToMs(1, 0x80000000)).toBe(1500);
		expect(ntpMiddle32(0x12345678, 0x9abcdef0)).toBe(0x56789abc);
	});

	it('builds receiver reports and PLIs a sender can read', () => {
		const block = { ssrc: 77, fractionLost: 25, cumulativeLost: 3, highestSeq: 0x1_0005, jitter: 12.4, lastSr: 0x1234, delaySinceLastSr: 65536 };
		const pli = buildPli(9, 77, 'subsecond-x', block);
		expect(findPli(pli)).toEqual({ senderSsrc: 9, mediaSsrc: 77 });
		const parsed = parseRtcp(pli);
		expect(parsed.ok).toBe(true);
		const rr = buildReceiverReport(9, 'subsecond-x', block);
		expect(rr.length % 4).toBe(0);
		expect(rr.readUInt32BE(8)).toBe(77);
		expect(rr[12]).toBe(25);
		expect(rr.readUIntBE(13, 3)).toBe(3);
		expect(rr.readUInt32BE(16)).toBe(0x1_0005);
		expect(rr.readUInt32BE(20)).toBe(12);
	});

	it('never throws on random or mutated datagrams (fuzz)', () => {
		const seeds = [
			buildRtp({ payloadType: 96, marker: true, sequenceNumber: 9, timestamp: 9, ssrc: 9, payload: randomBytes(40), csrcs: [1], extension: Buffer.alloc(4) }),
			buildSenderReport({ ssrc: 1, ntpSeconds: 2, ntpFraction: 3, rtpTimestamp: 4, packetCount: 5, octetCount: 6 }),
			Buffer.concat([buildReceiverReport(1, 'abc', null), buildBye([1])]),
		];
		let ok = 0;
		let bad = 0;
		for (let i = 0; i < 20_000; i++) {
			let buf: Buffer;
			if (i % 3 === 0) buf = randomBytes(Math.floor(Math.random() * 80));
			else {
				buf = Buffer.from(seeds[i % seeds.length]!);
				const flips = 1 + Math.floor(Math.random() * 4);
				for (let f = 0; f < flips; f++) buf[Math.floor(Math.random() * buf.length)] = Math.floor(Math.random() * 256);
				if (Math.random() < 0.3) buf = buf.subarray(0, Math.floor(Math.random() * buf.length));
			}
			const r = parseRtp(buf);
			const c = parseRtcp(buf);
			if (r.ok) {
				expect(r.value.payload.length).toBeGreaterThanOrEqual(0);
				expect(r.value.payload.byteOffset + r.value.payload.length).toBeLessThanOrEqual(buf.byteOffset + buf.length);
			}
			if (r.ok || c.ok) ok++;
			else bad++;
		}
		expect(ok).toBeGreaterThan(0);
		expect(bad).toBeGreaterThan(0);
	});
});

describe('SDP answer', () => {
	it('describes where to send, what, and with which SSRCs', () => {
		const sdp = buildSdp({
			stream: 'cam1',
			ip: '203.0.113.5',
			sessionId: '1',
			video: { port: 40000, rtcpPort: 40001, payloadType: 96, ssrc: 1111 },
			audio: { port: 40002, rtcpPort: 40003, payloadType: 111, ssrc: 2222 },
			spropParameterSets: 'Z0LAHtkA,aM4=',
		});
		expect(sdp.endsWith('\r\n')).toBe(true);
		// An independent SDP parser (werift's) reads it as we mean it.
		const s = SessionDescription.parse(sdp);
		expect(s.host).toBe('203.0.113.5');
		const [v, a] = s.media;
		expect(v).toMatchObject({ kind: 'video', port: 40000, profile: 'RTP/AVP', rtcpPort: 40001, rtcpMux: true, direction: 'recvonly' });
		expect(v!.rtp.codecs[0]).toMatchObject({ payloadType: 96, mimeType: 'video/H264', clockRate: 90000 });
		expect(v!.rtp.codecs[0]!.parameters).toBe('packetization-mode=1;sprop-parameter-sets=Z0LAHtkA,aM4=');
		expect(v!.ssrc[0]).toMatchObject({ ssrc: 1111, cname: 'subsecond-cam1' });
		expect(a).toMatchObject({ kind: 'audio', port: 40002, rtcpPort: 40003, rtcpMux: true, direction: 'recvonly' });
		expect(a!.rtp.codecs[0]).toMatchObject({ payloadType: 111, mimeType: 'audio/opus', clockRate: 48000, channels: 2 });
		expect(a!.ssrc[0]).toMatchObject({ ssrc: 2222 });
		expect(buildSdp({ stream: 'x', ip: '::1', sessionId: '1', video: { port: 1, rtcpPort: 2, payloadType: 96, ssrc: 1 }, audio: { port: 3, rtcpPort: 4, payloadType: 111, ssrc: 2 } })).toContain('c=IN IP6 ::1');
	});
});
