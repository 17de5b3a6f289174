import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { H264Depacketizer, parseSpropParameterSets } from '../../ingest/rtp/h264-depacketizer.js';
import type { DepacketizedFrame } from '../../ingest/rtp/h264-depacketizer.js';
import type { H264Config } from '../../server/core/codecs/h264.js';
import { encodeH264, packetizeH264 } from './helpers.js';

const nalType = (n: Buffer): number => n[0]! & 0x1f;

function harness(opts: { maxFrameSize?: number; sps?: Buffer; pps?: Buffer } = {}) {
	const frames: DepacketizedFrame[] = [];
	const configs: H264Config[] = [];
	const problems: string[] = [];
	let keyframeRequests = 0;
	const d = new H264Depacketizer(
		{
			frame: (f) => frames.push(f),
			config: (c) => configs.push(c),
			needKeyframe: () => keyframeRequests++,
			problem: (kind) => problems.push(kind),
		},
		{ maxFrameSize: opts.maxFrameSize ?? 1 << 20, sps: opts.sps, pps: opts.pps },
	);
	return { d, frames, configs, problems, keyframeRequests: () => keyframeRequests };
}

/** The picture NAL units of an access unit, as the depacketizer should emit them. */
const pictureNalus = (au: Buffer[]): Buffer[] => au.filter((n) => ![7, 8, 9].includes(nalType(n)));

describe('H.264 depacketizer (RFC 6184, packetization-mode 1)', () => {
	let aus: Buffer[][];
	beforeAll(async () => {
		// Two GOPs of real x264 output: IDR with SPS/PPS every 10 frames.
		aus = await encodeH264({ frames: 20, gop: 10, width: 320, height: 180 });
		expect(aus).toHaveLength(20);
	});

	const feed = (h: ReturnType<typeof harness>, au: Buffer[], ts: number, opts: { mtu?: number; stapA?: boolean; marker?: boolean } = {}): void => {
		const payloads = packetizeH264(au, opts);
		payloads.forEach((p, i) => h.d.push(p, ts, (opts.marker ?? true) && i === payloads.length - 1, ts));
	};

	it('rebuilds access units from single NAL units and FU-A, emitting each on its marker', () => {
		const h = harness();
		aus.forEach((au, i) => {
			feed(h, au, i * 3600, { mtu: 300 });
			// Emitted at the marker, not when the next frame starts.
			expect(h.frames).toHaveLength(i + 1);
		});
		expect(h.configs).toHaveLength(1);
		expect(h.configs[0]).toMatchObject({ width: 320, height: 180, profile: 'Constrained Baseline' });
		expect(h.frames.map((f) => f.keyframe)).toEqual(aus.map((_, i) => i % 10 === 0));
		h.frames.forEach((f, i) => {
			expect(f.ts).toBe(i * 3600);
			const want = pictureNalus(aus[i]!);
			expect(f.nalus.map((n) => n.toString('hex'))).toEqual(want.map((n) => n.toString('hex')));
		});
		expect(h.d.stats).toMatchObject({ frames: 20, keyframes: 2, framesDropped: 0, malformedPackets: 0, fuAborted: 0 });
	});

	it('unpacks STAP-A (SPS, PPS and small slices in one packet)', () => {
		const h = harness();
		aus.forEach((au, i) => feed(h, au, i * 3600, { stapA: true }));
		expect(h.frames).toHaveLength(20);
		expect(h.configs).toHaveLength(1);
		h.frames.forEach((f, i) => expect(Buffer.concat(f.nalus).equals(Buffer.concat(pictureNalus(aus[i]!)))).toBe(true));
	});

	it('splits frames on a timestamp change when the sender sets no marker', () => {
		const h = harness();
		aus.slice(0, 5).forEach((au, i) => feed(h, au, i * 3600, { marker: false }));
		expect(h.frames).toHaveLength(4);
		h.d.flush();
		expect(h.frames).toHaveLength(5);
	});

	it('waits for a keyframe at the start', () => {
		const h = harness();
		aus.slice(1, 12).forEach((au, i) => feed(h, au, (i + 1) * 3600));
		expect(h.frames.map((f) => f.keyframe)).toEqual([true, false]);
		expect(h.d.stats.framesDroppedWaitingForKeyframe).toBe(9);
		expect(h.keyframeRequests()).toBeGreaterThan(0);
	});

	it('drops the frame whose FU-A lost a fragment and waits for the next keyframe', () => {
		const h = harness();
		aus.slice(0, 3).forEach((au, i) => feed(h, au, i * 3600, { mtu: 200 }));
		// Frame 3: lose a middle fragment.
		const payloads = packetizeH264(aus[3]!, { mtu: 200 });
		const fuStart = payloads.findIndex((p) => nalType(p) === 28 && (p[1]! & 0x80) !== 0);
		const lost = fuStart + 1;
		expect(nalType(payloads[lost]!)).toBe(28);
		expect(payloads[lost]![1]! & 0xc0).toBe(0); // a middle fragment
		payloads.forEach((p, i) => {
			if (i === lost) {
				h.d.loss();
				return;
			}
			h.d.push(p, 3 * 3600, i === payloads.length - 1, 0);
		});
		expect(h.frames).toHaveLength(3);
		expect(h.d.stats.fuAborted).toBe(1);
		expect(h.keyframeRequests()).toBe(1);
		// P-frames after it reference a picture that never came: dropped until the IDR.
		aus.slice(4, 12).forEach((au, i) => feed(h, au, (i + 4) * 3600, { mtu: 200 }));
		expect(h.frames.map((f) => f.ts / 3600)).toEqual([0, 1, 2, 10, 11]);
		expect(h.d.stats.framesDroppedWaitingForKeyframe).toBe(6);
	});

	it('treats whole frames lost between markers as a broken reference chain', () => {
		const h = harness();
		feed(h, aus[0]!, 0);
		h.d.loss(); // frame 1 never came
		feed(h, aus[2]!, 2 * 3600);
		expect(h.frames).toHaveLength(1);
		expect(h.d.waitingForKeyframe).toBe(true);
	});

	it('drops a frame whose tail (and marker) was lost', () => {
		const h = harness();
		feed(h, aus[0]!, 0);
		const payloads = packetizeH264(aus[1]!, { mtu: 200 });
		h.d.push(payloads[0]!, 3600, false, 0);
		h.d.loss();
		feed(h, aus[10]!, 7200);
		expect(h.frames.map((f) => f.ts)).toEqual([0, 7200]);
		expect(h.d.stats.framesDropped).toBe(1);
	});

	it('lets a damaged non-reference picture go alone', () => {
		const h = harness();
		feed(h, aus[0]!, 0);
		// A disposable slice (nal_ref_idc 0), fragmented, with its middle lost.
		const slice = Buffer.concat([Buffer.from([0x01]), randomBytes(600)]);
		const payloads = packetizeH264([slice], { mtu: 200 });
		h.d.push(payloads[0]!, 3600, false, 0);
		h.d.loss();
		h.d.push(payloads[2]!, 3600, false, 0);
		h.d.push(payloads[3]!, 3600, true, 0);
		expect(h.d.stats.framesDropped).toBe(1);
		expect(h.d.waitingForKeyframe).toBe(false);
		feed(h, aus[1]!, 7200);
		expect(h.frames).toHaveLength(2);
	});

	it('announces new parameter sets before the keyframe that uses them', async () => {
		const other = await encodeH264({ frames: 2, width: 160, height: 90 });
		const order: string[] = [];
		const d = new H264Depacketizer(
			{
				frame: (f) => order.push(`frame${f.ts}`),
				config: (c) => order.push(`config${c.width}x${c.height}`),
				needKeyframe: () => undefined,
				problem: () => undefined,
			},
			{ maxFrameSize: 1 << 20 },
		);
		for (const p of packetizeH264(aus[0]!)) d.push(p, 0, false, 0);
		d.push(Buffer.alloc(0), 0, true, 0); // an empty payload damages frame 0
		packetizeH264(aus[10]!).forEach((p, i, all) => d.push(p, 3600, i === all.length - 1, 0));
		packetizeH264(other[0]!).forEach((p, i, all) => d.push(p, 7200, i === all.length - 1, 0));
		expect(order).toEqual(['config320x180', 'frame3600', 'config160x90', 'frame7200']);
		expect(d.stats).toMatchObject({ configChanges: 2, framesDropped: 1, malformedPackets: 1 });
	});

	it('starts from sprop-parameter-sets when the sender sends none in band', () => {
		const sps = aus[0]!.find((n) => nalType(n) === 7)!;
		const pps = aus[0]!.find((n) => nalType(n) === 8)!;
		const sprop = `${sps.toString('base64')},${pps.toString('base64')}`;
		const parsed = parseSpropParameterSets(sprop);
		const h = harness(parsed);
		expect(h.d.config).toMatchObject({ width: 320, height: 180 });
		feed(h, pictureNalus(aus[0]!), 0);
		expect(h.frames).toHaveLength(1);
		expect(h.configs).toHaveLength(0);
		expect(() => parseSpropParameterSets('not base64!')).toThrow(/base64/);
		expect(() => parseSpropParameterSets(sps.toString('base64'))).toThrow(/SPS and a PPS/);
	});

	it('refuses packetization-mode 2 and malformed payloads, counting them', () => {
		const h = harness();
		feed(h, aus[0]!, 0);
		h.d.push(Buffer.from([0x19, 0, 0, 0]), 3600, true, 0); // STAP-B
		h.d.push(Buffer.from([0x1d, 0x80, 1]), 7200, true, 0); // FU-B
		h.d.push(Buffer.from([0x18, 0, 9, 1]), 10800, true, 0); // STAP-A overrun
		h.d.push(Buffer.from([0x1e]), 14400, true, 0); // reserved type
		h.d.push(Buffer.from([0x1c, 0x05, 1, 2]), 18000, true, 0); // FU-A middle without start
		expect(h.d.stats.unsupportedPackets).toBe(2);
		expect(h.d.stats.malformedPackets).toBe(3);
		expect(h.frames).toHaveLength(1);
		expect(h.problems).toContain('packetization-mode');
	});

	it('bounds frame size', () => {
		const h = harness({ maxFrameSize: 2000 });
		feed(h, aus[0]!, 0, { mtu: 500 });
		expect(h.frames).toHaveLength(0);
		expect(h.d.stats.framesDropped).toBe(1);
	});

	it('never throws and never emits a frame with broken NAL units on random and mutated input (fuzz)', () => {
		const packets = aus.flatMap((au, i) => packetizeH264(au, { mtu: 300, stapA: i % 2 === 0 }).map((p, j, all) => ({ p, ts: i * 3600, m: j === all.length - 1 })));
		for (let round = 0; round < 200; round++) {
			const h = harness({ maxFrameSize: 200_000 });
			for (const { p, ts, m } of packets) {
				const r = Math.random();
				if (r < 0.05) {
					h.d.loss();
					continue;
				}
				let payload = p;
				if (r < 0.15) {
					payload = Buffer.from(p);
					for (let k = 0; k < 3; k++) payload[Math.floor(Math.random() * payload.length)] = Math.floor(Math.random() * 256);
				} else if (r < 0.2) {
					payload = randomBytes(Math.floor(Math.random() * 40));
				} else if (r < 0.25) {
					payload = p.subarray(0, Math.floor(Math.random() * p.length));
				}
				h.d.push(payload, ts, m !== Math.random() < 0.05, 0);
			}
			h.d.flush();
			for (const f of h.frames) {
				expect(f.nalus.length).toBeGreaterThan(0);
				for (const n of f.nalus) expect(n.length).toBeGreaterThan(0);
			}
		}
	});
});
