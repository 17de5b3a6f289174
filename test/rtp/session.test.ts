import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../server/common/emitter.js';
import type { AudioFrame, VideoFrame } from '../../server/core/media.js';
import type { Publication } from '../../server/core/stream.js';
import type { Server } from '../../server/server.js';
import { RTCP, findPli, parseRtcp } from '../../ingest/rtp/rtp.js';
import type { RtpAnswer } from '../../ingest/rtp/session.js';
import { eventually, startTestServer } from '../helpers/server.js';
import { TestRtpSender, encodeH264, packetizeH264, postRtp } from './helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const OPUS = Buffer.from([0xfc, 0xff, 0xfe]);

describe('RTP session with a scripted sender', () => {
	let server: Server;
	let aus: Buffer[][];
	const senders: TestRtpSender[] = [];
	const sender = async (pt: number, rate: number, port: number, ssrc?: number): Promise<TestRtpSender> => {
		const s = await new TestRtpSender(pt, rate, ssrc).open(port);
		senders.push(s);
		return s;
	};
	const open = async (name: string): Promise<{ answer: RtpAnswer; pub: Publication; video: VideoFrame[]; audio: AudioFrame[] }> => {
		const { status, body } = await postRtp(server, name);
		expect(status).toBe(201);
		const pub = server.registry.get(name)!.publication!;
		const video: VideoFrame[] = [];
		const audio: AudioFrame[] = [];
		pub.on('video', (f) => video.push(f));
		pub.on('audio', (f) => audio.push(f));
		return { answer: body, pub, video, audio };
	};

	beforeAll(async () => {
		server = await startTestServer({ rtpIngest: { listenIp: '127.0.0.1' }, streams: { keyframeRequestMinIntervalMs: 200 } });
		aus = await encodeH264({ frames: 50, gop: 25, width: 320, height: 180 });
	});
	afterEach(() => {
		for (const s of senders.splice(0)) s.close();
		for (const s of server.rtpIngest!.sessions()) s.close('test cleanup');
	});
	afterAll(async () => {
		await server.close();
	});

	it('lines audio and video up by sender reports, whatever their arrival', async () => {
		const { answer, video, audio } = await open('sync1');
		const v = await sender(96, 90000, answer.video.port, answer.video.ssrc);
		const a = await sender(111, 48000, answer.audio.port, answer.audio.ssrc);
		// Sender clock: media time 0 of both streams was sampled at wall 1_000_000 ms.
		await v.senderReport(0, 1_000_000, answer.video.rtcpPort); // RTCP on port + 1
		await a.senderReport(0, 1_000_000, answer.audio.port); // RTCP muxed
		for (let i = 0; i < 10; i++) {
			await v.sendAu(aus[i]!, i * 40);
			await sleep(5);
		}
		// The audio path is 150 ms slower than the video path.
		await sleep(150);
		for (let j = 0; j < 20; j++) await a.send(OPUS, j * 20, true);
		await eventually(() => video.length === 10 && audio.length === 20, 5000);
		// Same media time, same timeline position: to the sub-millisecond.
		expect(Math.abs(video[0]!.pts - audio[0]!.pts)).toBeLessThan(0.05);
		expect(Math.abs(video[5]!.pts - audio[10]!.pts)).toBeLessThan(0.05);
		// Arrival alone would have put audio that much later.
		expect(audio[0]!.receivedAt - video[0]!.receivedAt).toBeGreaterThan(50);
		expect(server.rtpIngest!.session('sync1')!.summary().synced).toEqual({ video: true, audio: true });
	});

	it('moves a stream onto the report timeline once, when reports come after the media', async () => {
		const { answer, video, audio } = await open('sync2');
		const v = await sender(96, 90000, answer.video.port);
		const a = await sender(111, 48000, answer.audio.port);
		for (let i = 0; i < 5; i++) await v.sendAu(aus[i]!, i * 40);
		await sleep(120);
		for (let j = 0; j < 10; j++) await a.send(OPUS, j * 20, true);
		await eventually(() => video.length === 5 && audio.length === 10, 5000);
		// Without reports: placed by arrival.
		const arrivalGap = audio[0]!.receivedAt - video[0]!.receivedAt;
		expect(Math.abs(audio[0]!.pts - video[0]!.pts - arrivalGap)).toBeLessThan(5);
		await v.senderReport(160, 2_000_160, answer.video.rtcpPort);
		await a.senderReport(180, 2_000_180, answer.audio.rtcpPort);
		await sleep(50);
		for (let i = 5; i < 45; i++) await v.sendAu(aus[i]!, i * 40);
		for (let j = 10; j < 90; j++) await a.send(OPUS, j * 20, true);
		await eventually(() => video.length === 45 && audio.length === 90, 5000);
		// Video kept its place (it anchored the timeline).
		for (let i = 1; i < video.length; i++) expect(video[i]!.pts - video[i - 1]!.pts).toBeCloseTo(40, 3);
		// Audio was moved back onto the sender's clock gradually, never going back...
		for (let j = 1; j < audio.length; j++) expect(audio[j]!.pts).toBeGreaterThan(audio[j - 1]!.pts);
		// ... and within ten times the step (here 1.2 s of media) it is exact.
		expect(Math.abs(video[44]!.pts - audio[88]!.pts)).toBeLessThan(0.05);
		expect(Math.abs(video[40]!.pts - audio[80]!.pts)).toBeLessThan(0.05);
	});

	it('sends receiver reports to a sender that speaks RTCP, and PLIs on request', async () => {
		const { answer, pub } = await open('fb1');
		const v = await sender(96, 90000, answer.video.port, answer.video.ssrc);
		await v.sendAu(aus[0]!, 0);
		await waitFor(pub, 'video', 5000);
		const session = server.rtpIngest!.session('fb1')!;
		// No RTCP from the sender yet: the PLI goes to its RTP address.
		expect(session.requestKeyFrame()).toBe(true);
		expect(session.requestKeyFrame()).toBe(false); // rate-limited
		await eventually(() => v.received.some((b) => findPli(b)?.mediaSsrc === v.ssrc), 3000);
		await v.senderReport(0, 5_000, answer.video.rtcpPort);
		for (let i = 1; i < 30; i++) {
			await v.sendAu(aus[i]!, i * 40);
			await sleep(40);
		}
		// Plain reports, not the RR that opens each compound PLI.
		const isReport = (b: Buffer): boolean => b[1] === RTCP.RR && findPli(b) === null;
		await eventually(() => v.received.some(isReport), 3000);
		const rr = v.received.find(isReport)!;
		expect(parseRtcp(rr).ok).toBe(true);
		expect(rr.readUInt32BE(8)).toBe(v.ssrc);
		expect(rr.readUInt32BE(24)).not.toBe(0); // LSR echoes our sender report
		await sleep(250);
		expect(server.rtpIngest!.requestKeyFrame('fb1')).toBe(true);
		expect(session.stats().video.keyframeRequestsSent).toBeGreaterThanOrEqual(2);
	});

	it('puts reordered packets back in order and drops frames a loss broke until the next keyframe', async () => {
		const { answer, video } = await open('net1');
		const v = await sender(96, 90000, answer.video.port);
		const packets: Buffer[] = [];
		const frameOf: number[] = [];
		aus.forEach((au, i) => {
			const ps = packetizeH264(au, { mtu: 300 });
			ps.forEach((p, k) => {
				packets.push(v.packet(p, i * 40, k === ps.length - 1));
				frameOf.push(i);
			});
		});
		// Swap neighbours in frames 2..4 (reordering), lose one packet of frame 30.
		const order = packets.map((_, i) => i);
		for (let i = 0; i < order.length - 1; i++) {
			if (frameOf[i]! >= 2 && frameOf[i]! <= 4 && i % 3 === 0) [order[i], order[i + 1]] = [order[i + 1]!, order[i]!];
		}
		const lostIndex = frameOf.indexOf(30) + 1;
		for (const i of order) {
			if (i === lostIndex) continue;
			await v.raw(packets[i]!);
			if (frameOf[i] !== frameOf[i + 1]) await sleep(2);
		}
		await eventually(() => video.length >= 49 - 20, 5000);
		await sleep(100);
		const stats = server.rtpIngest!.session('net1')!.stats().video;
		expect(stats.reordered).toBeGreaterThan(0);
		expect(stats.lost).toBe(1);
		const frames = video.map((f) => Math.round(f.pts - video[0]!.pts) / 40);
		// Frames 0..29 all made it despite reordering; 30..49 were lost for want of a keyframe (next at 50).
		expect(frames).toEqual(Array.from({ length: 30 }, (_, i) => i));
		expect(stats.frames.framesDroppedWaitingForKeyframe).toBe(19);
		expect(stats.keyframeRequestsSent).toBeGreaterThan(0);
	});

	it('latches the first sender, ignores others, and lets a new one in after the first goes quiet', async () => {
		const { answer, video } = await open('latch1');
		const first = await sender(96, 90000, answer.video.port);
		const intruder = await sender(96, 90000, answer.video.port);
		for (let i = 0; i < 5; i++) {
			await first.sendAu(aus[i]!, i * 40);
			await intruder.sendAu(aus[i]!, i * 40);
		}
		await eventually(() => video.length === 5, 5000);
		const s = server.rtpIngest!.session('latch1')!;
		expect(s.stats().video.foreign).toBeGreaterThan(0);
		expect(s.senders.video).toBe(`127.0.0.1:${first.localPort}`);
		// The first sender stops; after a quiet spell a restarted encoder takes over.
		await sleep(1700);
		const restarted = await sender(96, 90000, answer.video.port);
		for (let i = 25; i < 30; i++) await restarted.sendAu(aus[i]!, i * 40);
		await eventually(() => video.length === 10, 5000);
		expect(s.senders.video).toBe(`127.0.0.1:${restarted.localPort}`);
		expect(s.stats().video.sourceSwitches).toBe(1);
		expect(video[5]!.keyframe).toBe(true);
		for (let i = 1; i < video.length; i++) expect(video[i]!.dts).toBeGreaterThan(video[i - 1]!.dts);
	});

	it('with strictSsrc, takes only the announced SSRC', async () => {
		const strict = await startTestServer({ rtpIngest: { listenIp: '127.0.0.1', strictSsrc: true } });
		try {
			const { body } = await postRtp(strict, 'strict1');
			const pub = strict.registry.get('strict1')!.publication!;
			const other = await sender(111, 48000, body.audio.port);
			const right = await sender(111, 48000, body.audio.port, body.audio.ssrc);
			await other.send(OPUS, 0, true);
			await right.send(OPUS, 0, true);
			await waitFor(pub, 'audio', 5000);
			expect(strict.rtpIngest!.session('strict1')!.stats().audio).toMatchObject({ foreign: 1, packets: 1 });
		} finally {
			await strict.close();
		}
	});

	it('ignores a stray timestamp, but follows a real discontinuity', async () => {
		const { answer, audio } = await open('ts1');
		const a = await sender(111, 48000, answer.audio.port);
		for (let j = 0; j < 5; j++) await a.send(OPUS, j * 20, true);
		await a.send(OPUS, 3_600_000, true); // one packet an hour ahead
		for (let j = 6; j < 10; j++) await a.send(OPUS, j * 20, true);
		await eventually(() => audio.length === 9, 5000);
		expect(audio.map((f) => Math.round(f.pts - audio[0]!.pts))).toEqual([0, 20, 40, 60, 80, 120, 140, 160, 180]);
		// The sender's clock really jumps (a restart keeping SSRC and sequence).
		for (let j = 0; j < 5; j++) await a.send(OPUS, 7_200_000 + j * 20, true);
		await eventually(() => audio.length >= 12, 5000);
		const s = server.rtpIngest!.session('ts1')!.stats().audio;
		expect(s.badTimestamps).toBe(1 + 2);
		expect(s.discontinuities).toBe(1);
		const after = audio.slice(9);
		for (let i = 1; i < after.length; i++) expect(after[i]!.pts - after[i - 1]!.pts).toBeCloseTo(20, 3);
		// Placed by arrival, not an hour later.
		expect(after[0]!.pts - audio[8]!.pts).toBeLessThan(1000);
	});

	it('takes B-frame style timestamps as reordering and keeps dts increasing', async () => {
		const { answer, video, pub } = await open('bf1');
		const v = await sender(96, 90000, answer.video.port);
		// Presentation order I0 P3 B1 B2 P6 B4 B5 sent in decode order.
		const pts = [0, 3, 1, 2, 6, 4, 5];
		for (let i = 0; i < pts.length; i++) await v.sendAu(aus[i]!, pts[i]! * 40);
		await eventually(() => video.length === pts.length, 5000);
		expect(video.map((f) => Math.round(f.pts - video[0]!.pts) / 40)).toEqual(pts);
		for (let i = 1; i < video.length; i++) expect(video[i]!.dts).toBeGreaterThan(video[i - 1]!.dts);
		expect(pub.hasBFrames).toBe(true);
	});
});
