import { describe, expect, it } from 'vitest';
import { H264Packetizer, depacketizeH264 } from '../../ingest/bridge/h264-packetizer.js';
import { IP_UDP_OVERHEAD, RTP_HEADER_SIZE, RtpSender, maxRtpPayload, parseRtpHeader } from '../../ingest/bridge/rtp.js';

interface Captured {
	packets: Buffer[];
	sender: RtpSender;
	packetizer: H264Packetizer;
}

function setup(mtu = 1200, initialSequenceNumber = 1000, timestampBase = 0): Captured {
	const packets: Buffer[] = [];
	const sender = new RtpSender({ payloadType: 102, clockRate: 90000, maxPacketSize: mtu - IP_UDP_OVERHEAD, initialSequenceNumber, timestampBase, ssrc: 0x11223344 });
	sender.setSink((p) => packets.push(Buffer.from(p)));
	return { packets, sender, packetizer: new H264Packetizer(sender, maxRtpPayload(mtu)) };
}

/** A NAL unit of `size` bytes with the given type and pseudo-random body. */
function nal(type: number, size: number, seed = size): Buffer {
	const b = Buffer.alloc(size);
	b[0] = 0x60 | type;
	let x = seed * 2654435761;
	for (let i = 1; i < size; i++) {
		x = (x * 1103515245 + 12345) >>> 0;
		b[i] = x >>> 24;
	}
	return b;
}

const SPS = nal(7, 12, 1);
const PPS = nal(8, 4, 2);
const PARAMS = { sps: [SPS], pps: [PPS] };

function payloads(packets: readonly Buffer[]): Buffer[] {
	return packets.map((p) => {
		const h = parseRtpHeader(p);
		return p.subarray(h.payloadOffset, h.payloadEnd);
	});
}

describe('H.264 RTP packetizer (RFC 6184)', () => {
	it('sends a small NAL unit as one single-NAL packet with the marker set', () => {
		const { packets, packetizer } = setup();
		const n = nal(1, 300);
		expect(packetizer.send([n], 1234, false, PARAMS)).toBe(1);
		expect(packets).toHaveLength(1);
		const h = parseRtpHeader(packets[0]!);
		expect(h).toMatchObject({ version: 2, marker: true, payloadType: 102, sequenceNumber: 1000, timestamp: 1234, ssrc: 0x11223344 });
		expect(packets[0]!.subarray(RTP_HEADER_SIZE).equals(n)).toBe(true);
	});

	it('puts SPS and PPS in one STAP-A before every keyframe and skips identical in-band copies', () => {
		const { packets, packetizer } = setup();
		const idr = nal(5, 200);
		const sei = nal(6, 20);
		packetizer.send([SPS, PPS, sei, idr], 90000, true, PARAMS);
		// SPS, PPS, SEI and the IDR all fit in one STAP-A; the in-band SPS/PPS are not repeated.
		expect(packets).toHaveLength(1);
		const p = payloads(packets)[0]!;
		expect(p[0]! & 0x1f).toBe(24);
		expect(depacketizeH264([p]).map((b) => b.toString('hex'))).toEqual([SPS, PPS, sei, idr].map((b) => b.toString('hex')));
		// NRI of a STAP-A is the largest of its units.
		expect(p[0]! & 0x60).toBe(0x60);
		expect(parseRtpHeader(packets[0]!).marker).toBe(true);
	});

	it('sends parameter sets when a frame holds an IDR even if not flagged keyframe, and changed in-band ones as they are', () => {
		const { packets, packetizer } = setup();
		const newSps = nal(7, 14, 99);
		packetizer.send([newSps, nal(5, 3000)], 0, false, PARAMS);
		const units = depacketizeH264(payloads(packets));
		expect(units.map((u) => u[0]! & 0x1f)).toEqual([7, 8, 7, 5]);
		expect(units[2]!.equals(newSps)).toBe(true);
	});

	it('drops AUDs, filler and end-of-stream units', () => {
		const { packets, packetizer } = setup();
		packetizer.send([nal(9, 2), nal(12, 50), nal(1, 100), nal(11, 1)], 0, false, null);
		expect(depacketizeH264(payloads(packets)).map((u) => u[0]! & 0x1f)).toEqual([1]);
	});

	it('fragments with FU-A exactly at the MTU boundary', () => {
		const mtu = 1200;
		const max = maxRtpPayload(mtu);
		expect(max).toBe(mtu - 28 - 12);
		for (const [size, expected] of [
			[max, 1],
			[max + 1, 2],
			[2 * (max - 2) + 1, 2],
			[2 * (max - 2) + 2, 3],
		] as const) {
			const { packets, packetizer } = setup(mtu);
			packetizer.send([nal(1, size)], 0, false, null);
			expect(packets, `NAL of ${size} bytes`).toHaveLength(expected);
			for (const p of packets) expect(p.length).toBeLessThanOrEqual(mtu - IP_UDP_OVERHEAD);
		}
	});

	it('marks FU-A start and end, keeps the NAL header bits, and spreads fragments evenly', () => {
		const { packets, packetizer } = setup(1200);
		const big = nal(5, 5000);
		packetizer.send([big], 7, true, null);
		const pl = payloads(packets);
		expect(pl.length).toBe(Math.ceil(4999 / (maxRtpPayload(1200) - 2)));
		pl.forEach((p, i) => {
			expect(p[0]).toBe((big[0]! & 0xe0) | 28);
			expect(p[1]! & 0x1f).toBe(5);
			expect(Boolean(p[1]! & 0x80)).toBe(i === 0);
			expect(Boolean(p[1]! & 0x40)).toBe(i === pl.length - 1);
			expect(parseRtpHeader(packets[i]!).marker).toBe(i === pl.length - 1);
		});
		const sizes = pl.map((p) => p.length);
		expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
		expect(depacketizeH264(pl)[0]!.equals(big)).toBe(true);
	});

	it('sets the marker only on the last packet of an access unit with several slices', () => {
		const { packets, packetizer } = setup(1200);
		packetizer.send([nal(1, 2000), nal(1, 700), nal(1, 900)], 5, false, null);
		const markers = packets.map((p) => parseRtpHeader(p).marker);
		expect(markers.filter(Boolean)).toHaveLength(1);
		expect(markers[markers.length - 1]).toBe(true);
	});

	it('wraps sequence numbers at 16 bits', () => {
		const { packets, packetizer } = setup(1200, 65534);
		for (let i = 0; i < 4; i++) packetizer.send([nal(1, 100)], i * 3000, false, null);
		expect(packets.map((p) => parseRtpHeader(p).sequenceNumber)).toEqual([65534, 65535, 0, 1]);
	});

	it('derives 90 kHz timestamps from presentation times, wrapping at 32 bits', () => {
		const s = new RtpSender({ payloadType: 102, clockRate: 90000, maxPacketSize: 1172, timestampBase: 0xffffff00 });
		expect(s.timestampOf(0)).toBe(0xffffff00);
		expect((s.timestampOf(1000) - s.timestampOf(0) + 2 ** 32) % 2 ** 32).toBe(90000);
		expect(s.timestampOf(40)).toBe((0xffffff00 + 3600) % 2 ** 32);
		expect(s.timestampOf(1 / 90)).toBe(0xffffff01);
		expect(s.timestampOf(-1)).toBe(0xffffff00 - 90);
		const a = new RtpSender({ payloadType: 111, clockRate: 48000, maxPacketSize: 1472, timestampBase: 5 });
		expect(a.timestampOf(20)).toBe(5 + 960);
		// Long streams: days of media stay exact.
		expect(a.timestampOf(86_400_000)).toBe((5 + 86_400 * 48000) % 2 ** 32);
	});

	it('retransmits a NACKed packet byte for byte while it is in the history', () => {
		const { packets, sender, packetizer } = setup(1200, 65530);
		for (let i = 0; i < 10; i++) packetizer.send([nal(1, 100 + i)], i, false, null);
		const third = packets[2]!;
		const seq = parseRtpHeader(third).sequenceNumber;
		expect(sender.retransmit(seq)).toBe(true);
		expect(packets[packets.length - 1]!.equals(third)).toBe(true);
		expect(sender.retransmit((seq + 100) & 0xffff)).toBe(false);
		expect(sender.stats).toMatchObject({ packets: 10, retransmitted: 1, retransmitMisses: 1 });
	});

	it('round-trips random access units through depacketization (fuzz)', () => {
		let seed = 42;
		const rand = (n: number): number => {
			seed = (seed * 1103515245 + 12345) >>> 0;
			return seed % n;
		};
		for (let round = 0; round < 300; round++) {
			const mtu = 576 + rand(1500 - 576);
			const { packets, packetizer, sender } = setup(mtu, rand(65536), rand(2 ** 31));
			const max = maxRtpPayload(mtu);
			const keyframe = rand(4) === 0;
			const count = 1 + rand(6);
			const units: Buffer[] = [];
			for (let i = 0; i < count; i++) {
				// Sizes around the interesting boundaries as well as anywhere.
				const pick = rand(5);
				const size = pick === 0 ? max - 1 + rand(3) : pick === 1 ? 2 + rand(20) : 2 + rand(8000);
				units.push(nal([1, 5, 6][rand(3)]!, size, round * 10 + i));
			}
			const ts = rand(2 ** 32);
			const n = packetizer.send(units, ts, keyframe, PARAMS);
			expect(n).toBe(packets.length);
			for (const p of packets) {
				expect(p.length).toBeLessThanOrEqual(mtu - IP_UDP_OVERHEAD);
				expect(parseRtpHeader(p).timestamp).toBe(ts);
			}
			expect(packets.map((p) => parseRtpHeader(p).marker)).toEqual(packets.map((_, i) => i === packets.length - 1));
			const seqs = packets.map((p) => parseRtpHeader(p).sequenceNumber);
			for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe((seqs[i - 1]! + 1) & 0xffff);
			const expected = (keyframe || units.some((u) => (u[0]! & 0x1f) === 5) ? [SPS, PPS] : []).concat(units);
			const got = depacketizeH264(payloads(packets));
			expect(got.length).toBe(expected.length);
			got.forEach((g, i) => expect(g.equals(expected[i]!)).toBe(true));
			expect(sender.stats.packets).toBe(packets.length);
		}
	});
});
