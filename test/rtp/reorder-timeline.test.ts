import { describe, expect, it } from 'vitest';
import { ReorderBuffer } from '../../ingest/rtp/reorder.js';
import { SessionTimeline, TimestampUnwrapper, extendNear } from '../../ingest/rtp/timeline.js';

/** A reorder buffer on a hand-driven clock, recording what it does. */
function harness(windowMs = 10, maxPackets = 8) {
	let now = 0;
	const timers: { at: number; fn: () => void }[] = [];
	const out: string[] = [];
	const seqs: number[] = [];
	const buf = new ReorderBuffer<number>(
		{
			deliver: (item) => {
				out.push(`d${item}`);
				seqs.push(item);
			},
			loss: (count) => out.push(`lost${count}`),
			resync: () => out.push('resync'),
		},
		{
			windowMs,
			maxPackets,
			now: () => now,
			setTimer: (fn, ms) => {
				const t = { at: now + ms, fn };
				timers.push(t);
				return t;
			},
			clearTimer: (h) => {
				const i = timers.indexOf(h as (typeof timers)[number]);
				if (i !== -1) timers.splice(i, 1);
			},
		},
	);
	const advance = (ms: number): void => {
		now += ms;
		for (const t of [...timers].sort((a, b) => a.at - b.at)) {
			if (t.at > now) continue;
			timers.splice(timers.indexOf(t), 1);
			t.fn();
		}
	};
	return { buf, out, seqs, advance, timers };
}

describe('reorder buffer', () => {
	it('delivers packets in order at once, across the 16-bit wrap', () => {
		const h = harness();
		for (const s of [65533, 65534, 65535, 0, 1, 2]) h.buf.push(s, s);
		expect(h.out).toEqual(['d65533', 'd65534', 'd65535', 'd0', 'd1', 'd2']);
		expect(h.timers).toHaveLength(0);
		expect(h.buf.stats).toMatchObject({ delivered: 6, lost: 0, reordered: 0 });
		expect(h.buf.highestSeq - h.buf.baseSeq).toBe(5);
	});

	it('holds packets behind a gap only until the gap fills', () => {
		const h = harness();
		h.buf.push(10, 10);
		h.buf.push(12, 12);
		h.buf.push(13, 13);
		expect(h.out).toEqual(['d10']);
		h.buf.push(11, 11);
		expect(h.out).toEqual(['d10', 'd11', 'd12', 'd13']);
		expect(h.buf.stats).toMatchObject({ reordered: 1, lost: 0 });
		expect(h.timers).toHaveLength(0);
	});

	it('declares a gap lost after the window and moves on', () => {
		const h = harness(10);
		h.buf.push(100, 100);
		h.buf.push(102, 102);
		h.advance(9);
		expect(h.out).toEqual(['d100']);
		h.advance(1);
		expect(h.out).toEqual(['d100', 'lost1', 'd102']);
		// The straggler is now late: dropped and counted.
		h.buf.push(101, 101);
		expect(h.out).toHaveLength(3);
		expect(h.buf.stats).toMatchObject({ lost: 1, late: 1 });
	});

	it('bounds what it holds by count, not only by time', () => {
		const h = harness(1000, 4);
		h.buf.push(0, 0);
		for (let s = 2; s <= 6; s++) h.buf.push(s, s);
		expect(h.out).toEqual(['d0', 'lost1', 'd2', 'd3', 'd4', 'd5', 'd6']);
		expect(h.buf.heldCount).toBe(0);
	});

	it('handles several gaps, each on its own deadline', () => {
		const h = harness(10);
		h.buf.push(0, 0);
		h.buf.push(2, 2);
		h.advance(5);
		h.buf.push(5, 5);
		h.advance(5);
		expect(h.out).toEqual(['d0', 'lost1', 'd2']);
		h.buf.push(3, 3);
		expect(h.out).toEqual(['d0', 'lost1', 'd2', 'd3']);
		h.advance(5);
		expect(h.out).toEqual(['d0', 'lost1', 'd2', 'd3', 'lost1', 'd5']);
	});

	it('drops duplicates', () => {
		const h = harness();
		h.buf.push(1, 1);
		h.buf.push(1, 1);
		h.buf.push(3, 3);
		h.buf.push(3, 3);
		h.buf.push(2, 2);
		expect(h.out).toEqual(['d1', 'd2', 'd3']);
		expect(h.buf.stats.late).toBe(2);
	});

	it('believes a big sequence jump only when the next packet continues it', () => {
		const h = harness();
		h.buf.push(1000, 1000);
		h.buf.push(1001, 1001);
		h.buf.push(40000, 40000); // a stray packet
		h.buf.push(1002, 1002);
		expect(h.out).toEqual(['d1000', 'd1001', 'd1002']);
		h.buf.push(20000, 20000); // the sender restarted its numbering
		h.buf.push(20001, 20001);
		h.buf.push(20002, 20002);
		expect(h.out).toEqual(['d1000', 'd1001', 'd1002', 'resync', 'd20000', 'd20001', 'd20002']);
		expect(h.buf.stats).toMatchObject({ outOfRange: 2, resyncs: 1, lost: 0 });
	});

	it('with a zero window, never waits', () => {
		const h = harness(0);
		h.buf.push(1, 1);
		h.buf.push(3, 3);
		expect(h.out).toEqual(['d1', 'lost1', 'd3']);
	});

	it('survives random arrival orders, delivering an increasing sequence (fuzz)', () => {
		for (let round = 0; round < 200; round++) {
			const h = harness(10, 16);
			const start = Math.floor(Math.random() * 65536);
			const order = Array.from({ length: 300 }, (_, i) => (start + i) & 0xffff);
			// Local shuffles, drops and duplicates, like a bad network.
			for (let i = 0; i < order.length - 3; i++) {
				if (Math.random() < 0.1) [order[i], order[i + 2]] = [order[i + 2]!, order[i]!];
			}
			for (const s of order) {
				if (Math.random() < 0.05) continue;
				h.buf.push(s, s);
				if (Math.random() < 0.05) h.buf.push(s, s);
				h.advance(Math.random() * 4);
			}
			h.advance(100);
			const unwrapped = h.seqs.map((s) => (s - start + 65536) & 0xffff);
			for (let i = 1; i < unwrapped.length; i++) expect(unwrapped[i]!).toBeGreaterThan(unwrapped[i - 1]!);
			const { delivered, lost } = h.buf.stats;
			expect(delivered + lost).toBe(unwrapped.at(-1)! - unwrapped[0]! + 1);
		}
	});
});

describe('RTP timestamps', () => {
	it('unwraps 32-bit timestamps forwards and backwards across the wrap', () => {
		const u = new TimestampUnwrapper();
		const a = u.unwrap(0xffffff00);
		const b = u.unwrap(0x00000100);
		expect(b - a).toBe(0x200);
		const c = u.unwrap(0xfffffff0); // a late packet from before the wrap
		expect(c - a).toBe(0xf0);
		expect(u.peek(0x00000200) - b).toBe(0x100);
		expect(extendNear(5, 0x1_0000_0000 * 3 + 0xfffffffe)).toBe(0x1_0000_0000 * 4 + 5);
		expect(extendNear(0xfffffffe, 0x1_0000_0000 * 4 + 5)).toBe(0x1_0000_0000 * 3 + 0xfffffffe);
	});

	it('places streams by arrival until a sender report, then by the sender clock', () => {
		const t = new SessionTimeline({ videoClockRate: 90000, audioClockRate: 48000, driftMs: 40 });
		const video0 = 1_000_000_000;
		const audio0 = 7_000;
		// Video's first packet arrives at 100 ms, audio's at 180 ms, though both
		// were sampled at the same instant (the audio path was slower).
		expect(t.startTrack('video', video0, 100)).toBeNull();
		expect(t.startTrack('audio', audio0, 180)).toBeNull();
		expect(t.clocks.video.toMs(video0 + 90_000)).toBeCloseTo(1100);
		expect(t.clocks.audio.toMs(audio0 + 48_000)).toBeCloseTo(1180);
		// Sender wall clock: both sampled at 5000 ms.
		const ev1 = t.senderReport('video', 5000, video0 >>> 0, video0);
		expect(ev1.outcome).toBe('anchored');
		expect(t.clocks.video.toMs(video0)).toBeCloseTo(100);
		const ev2 = t.senderReport('audio', 5000, audio0, audio0);
		expect(ev2).toMatchObject({ outcome: 'aligned' });
		expect(ev2.shiftMs).toBeCloseTo(-80);
		// Moving back is spread over the next 800 ms of audio (10% slower), so
		// audio timestamps never decrease; then audio sits on the sender's clock.
		expect(t.clocks.audio.toMs(audio0)).toBeCloseTo(180);
		let last = -Infinity;
		for (let ext = audio0; ext <= audio0 + 48_000; ext += 960) {
			const ms = t.clocks.audio.toMs(ext);
			expect(ms).toBeGreaterThan(last);
			last = ms;
		}
		expect(t.clocks.audio.toMs(audio0 + 38_400)).toBeCloseTo(t.clocks.video.toMs(video0 + 72_000));
		expect(t.clocks.audio.toMs(audio0 + 96_000)).toBeCloseTo(t.clocks.video.toMs(video0 + 180_000));
		// Small disagreements do not move anything; gross drift does.
		expect(t.senderReport('audio', 6010, (audio0 + 48_000) >>> 0, audio0 + 48_000).outcome).toBe('unchanged');
		const drift = t.senderReport('audio', 7100, (audio0 + 96_000) >>> 0, audio0 + 96_000);
		expect(drift.outcome).toBe('corrected');
		expect(drift.shiftMs).toBeCloseTo(100);
		expect(t.corrections).toBe(1);
		// A large step back is taken at once: spreading it would take too long.
		const big = t.senderReport('audio', 8100 + 3000, (audio0 + 144_000) >>> 0, audio0 + 144_000);
		expect(big.outcome).toBe('corrected');
		const back = t.senderReport('audio', 9100 + 3000 - 2000, (audio0 + 192_000) >>> 0, audio0 + 192_000);
		expect(back.shiftMs).toBeCloseTo(-2000);
		expect(t.clocks.audio.toMs(audio0 + 192_000)).toBeCloseTo(10_100 - 4900);
	});

	it('uses a report that came before the first packet from the start', () => {
		const t = new SessionTimeline({ videoClockRate: 90000, audioClockRate: 48000, driftMs: 40 });
		expect(t.senderReport('video', 10_000, 900, null).outcome).toBe('pending');
		expect(t.senderReport('audio', 10_000, 480, null).outcome).toBe('pending');
		expect(t.startTrack('video', 0x1_0000_0000 + 900, 50)?.outcome).toBe('anchored');
		const ev = t.startTrack('audio', 0x1_0000_0000 + 480, 75);
		expect(ev).toMatchObject({ outcome: 'aligned' });
		expect(t.clocks.audio.toMs(0x1_0000_0000 + 480)).toBeCloseTo(t.clocks.video.toMs(0x1_0000_0000 + 900));
	});

	it('re-anchors instead of jumping when reports come from another clock', () => {
		const t = new SessionTimeline({ videoClockRate: 90000, audioClockRate: 48000, driftMs: 40 });
		t.startTrack('video', 0, 0);
		t.senderReport('video', 1_000_000, 0, 0);
		t.startTrack('audio', 0, 10);
		const ev = t.senderReport('audio', 99_000_000, 0, 0);
		expect(ev.outcome).toBe('reanchored');
		expect(t.clocks.audio.toMs(0)).toBe(10);
		expect(t.clocks.video.synced).toBe(false);
	});
});
