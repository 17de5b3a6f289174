import { describe, expect, it } from 'vitest';
import { MediaClock } from '../../ingest/bridge/clock.js';
import { RTCP, buildNack, buildPli, buildSenderReport, isRtcp, ntpFromUnixMs, parseRtcp, unixMsFromNtp } from '../../ingest/bridge/rtcp.js';
import type { ParsedSenderReport } from '../../ingest/bridge/rtcp.js';
import { RtpSender } from '../../ingest/bridge/rtp.js';
import { BadRequest } from '../../server/common/errors.js';

describe('RTCP', () => {
	it('builds a sender report with counts and an SDES CNAME in one compound packet', () => {
		const ntpMs = Date.UTC(2024, 0, 2, 3, 4, 5, 678) + 0.25;
		const buf = buildSenderReport({ ssrc: 0xdeadbeef, ntpMs, rtpTimestamp: 0xfffffff0, packetCount: 1234, octetCount: 987654, cname: 'subsecond-abc' });
		expect(buf.length % 4).toBe(0);
		expect(isRtcp(buf)).toBe(true);
		expect(buf[0]).toBe(0x80);
		expect(buf[1]).toBe(RTCP.SR);
		expect(buf.readUInt16BE(2)).toBe(6);
		const parsed = parseRtcp(buf);
		expect(parsed).toHaveLength(2);
		const sr = parsed[0] as ParsedSenderReport;
		expect(sr).toMatchObject({ type: 'sr', ssrc: 0xdeadbeef, rtpTimestamp: 0xfffffff0, packetCount: 1234, octetCount: 987654 });
		expect(Math.abs(sr.ntpMs - ntpMs)).toBeLessThan(0.001);
		expect(parsed[1]).toMatchObject({ type: 'other', packetType: RTCP.SDES });
		// The SDES chunk: SSRC, then CNAME (type 1), its length and text.
		const sdes = buf.subarray(28);
		expect(sdes.readUInt32BE(4)).toBe(0xdeadbeef);
		expect(sdes[8]).toBe(1);
		expect(sdes.toString('utf8', 10, 10 + sdes[9]!)).toBe('subsecond-abc');
	});

	it('converts NTP timestamps both ways', () => {
		const ms = 1_700_000_000_123.5;
		const n = ntpFromUnixMs(ms);
		expect(n.seconds).toBe(Math.floor(ms / 1000) + 2_208_988_800);
		expect(Math.abs(unixMsFromNtp(n.seconds, n.fraction) - ms)).toBeLessThan(0.001);
	});

	it('parses PLI, FIR, NACK and RR', () => {
		expect(parseRtcp(buildPli(1, 2))).toEqual([{ type: 'pli', senderSsrc: 1, mediaSsrc: 2 }]);
		const nack = parseRtcp(buildNack(1, 2, [65534, 65535, 0, 5, 40]));
		expect(nack).toEqual([{ type: 'nack', senderSsrc: 1, mediaSsrc: 2, seqs: [65534, 65535, 0, 5, 40] }]);
		const fir = Buffer.alloc(20);
		fir[0] = 0x84;
		fir[1] = RTCP.PSFB;
		fir.writeUInt16BE(4, 2);
		fir.writeUInt32BE(7, 4);
		fir.writeUInt32BE(0, 8);
		fir.writeUInt32BE(0xabc, 12);
		fir[16] = 9;
		expect(parseRtcp(fir)).toEqual([{ type: 'fir', senderSsrc: 7, mediaSsrc: 0xabc, seq: 9 }]);
		const rr = Buffer.alloc(32);
		rr[0] = 0x81;
		rr[1] = RTCP.RR;
		rr.writeUInt16BE(7, 2);
		rr.writeUInt32BE(5, 4);
		rr.writeUInt32BE(6, 8);
		rr[12] = 64;
		rr.writeUIntBE(3, 13, 3);
		rr.writeUInt32BE(100, 20);
		const parsed = parseRtcp(Buffer.concat([rr, buildPli(5, 6)]));
		expect(parsed[0]).toEqual({ type: 'rr', senderSsrc: 5, reports: [{ ssrc: 6, fractionLost: 0.25, cumulativeLost: 3, jitter: 100 }] });
		expect(parsed[1]).toMatchObject({ type: 'pli', mediaSsrc: 6 });
	});

	it('rejects malformed packets with BadRequest only (fuzz)', () => {
		let seed = 7;
		const rand = (n: number): number => {
			seed = (seed * 1103515245 + 12345) >>> 0;
			return seed % n;
		};
		const good = [buildPli(1, 2), buildNack(1, 2, [1, 2, 3]), buildSenderReport({ ssrc: 1, ntpMs: Date.now(), rtpTimestamp: 1, packetCount: 1, octetCount: 1, cname: 'x' })];
		let parsedOk = 0;
		for (let i = 0; i < 5000; i++) {
			let buf: Buffer;
			if (rand(2) === 0) {
				buf = Buffer.alloc(rand(64));
				for (let k = 0; k < buf.length; k++) buf[k] = rand(256);
			} else {
				buf = Buffer.from(good[rand(good.length)]!);
				const cut = rand(3) === 0 ? rand(buf.length) : buf.length;
				buf = buf.subarray(0, cut);
				for (let m = rand(4); m > 0 && buf.length > 0; m--) buf[rand(buf.length)] = rand(256);
			}
			try {
				parseRtcp(buf);
				parsedOk++;
			} catch (err) {
				expect(err).toBeInstanceOf(BadRequest);
			}
		}
		expect(parsedOk).toBeGreaterThan(0);
	});

	it('maps audio and video sender reports to one wall clock (A/V sync)', () => {
		const clock = new MediaClock();
		const video = new RtpSender({ payloadType: 102, clockRate: 90000, maxPacketSize: 1172 });
		const audio = new RtpSender({ payloadType: 111, clockRate: 48000, maxPacketSize: 1472 });
		const arrival = 1_700_000_000_000;
		clock.observe(5000, arrival); // first frame: publisher time 5 s arrived at `arrival`
		clock.observe(5040, arrival + 45); // jitter does not move the mapping
		const srAt = arrival + 1234.5;
		const t = clock.mediaTimeAt(srAt)!;
		expect(t).toBeCloseTo(6234.5, 6);
		const vsr = parseRtcp(buildSenderReport({ ssrc: video.ssrc, ntpMs: srAt, rtpTimestamp: video.timestampOf(t), packetCount: 0, octetCount: 0 }))[0] as ParsedSenderReport;
		const asr = parseRtcp(buildSenderReport({ ssrc: audio.ssrc, ntpMs: srAt, rtpTimestamp: audio.timestampOf(t), packetCount: 0, octetCount: 0 }))[0] as ParsedSenderReport;
		// A receiver maps a packet of each stream carrying publisher time 6000 to wall time:
		const wallOf = (sr: ParsedSenderReport, rtp: number, rate: number): number => {
			const d = ((rtp - sr.rtpTimestamp + 2 ** 31) % 2 ** 32 + 2 ** 32) % 2 ** 32 - 2 ** 31;
			return sr.ntpMs + (d / rate) * 1000;
		};
		const vw = wallOf(vsr, video.timestampOf(6000), 90000);
		const aw = wallOf(asr, audio.timestampOf(6000), 48000);
		expect(Math.abs(vw - aw)).toBeLessThan(0.05);
		expect(Math.abs(vw - (arrival + 1000))).toBeLessThan(0.05);
	});

	it('re-anchors the clock only on a large jump, for both streams at once', () => {
		const clock = new MediaClock(3000);
		clock.observe(0, 1000);
		clock.observe(10_000, 11_500);
		expect(clock.reanchors).toBe(0);
		expect(clock.mediaTimeAt(2000)).toBe(1000);
		clock.observe(100_000, 12_000); // publisher timestamps jumped by ~90 s
		expect(clock.reanchors).toBe(1);
		expect(clock.mediaTimeAt(13_000)).toBe(101_000);
	});
});
