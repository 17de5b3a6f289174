import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildRtp } from '../../ingest/rtp/rtp.js';
import type { RtpAnswer } from '../../ingest/rtp/session.js';
import type { Server } from '../../server/server.js';
import { runFfmpeg, stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { ffmpegRtpArgs, postRtp } from './helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A relay between ffmpeg and the ingest: forwards real packets and injects bad ones from the same address. */
class Relay {
	readonly socket = dgram.createSocket('udp4');
	recent: Buffer[] = [];
	forwarded = 0;
	constructor(readonly target: number) {
		this.socket.on('message', (m) => {
			this.recent.push(m);
			if (this.recent.length > 64) this.recent.shift();
			this.forwarded++;
			this.socket.send(m, target, '127.0.0.1');
		});
	}
	async open(): Promise<number> {
		await new Promise<void>((r) => this.socket.bind(0, '127.0.0.1', () => r()));
		return this.socket.address().port;
	}
	inject(buf: Buffer, port = this.target): void {
		this.socket.send(buf, port, '127.0.0.1');
	}
	close(): void {
		this.socket.close();
	}
}

const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)]!;

/** One bad datagram, built from a real packet of the stream or from nothing. */
function mutate(real: Buffer | undefined): Buffer {
	const r = Math.random();
	if (!real || r < 0.1) return randomBytes(Math.floor(Math.random() * 1500));
	const b = Buffer.from(real);
	if (r < 0.2) return b.subarray(0, Math.floor(Math.random() * 12)); // truncated header
	if (r < 0.3) {
		b[0] = (b[0]! & 0x3f) | (Math.floor(Math.random() * 3) << 6); // versions 0..2 (mostly bad)
		return b;
	}
	if (r < 0.4) {
		b[0] = 0x8f; // 15 CSRCs the packet does not have room for, or garbage read as CSRCs
		return b;
	}
	if (r < 0.5) {
		b[0] = b[0]! | 0x30; // padding and extension bits set on a packet that has neither
		return b;
	}
	if (r < 0.65 && b.length > 14) {
		// Broken FU-A: wrong start/end bits, fragment type changed, or payload cut.
		b[12] = (b[12]! & 0xe0) | 28;
		b[13] = (Math.random() < 0.5 ? 0x80 : 0x40) | Math.floor(Math.random() * 32);
		return b.subarray(0, 14 + Math.floor(Math.random() * (b.length - 14)));
	}
	if (r < 0.8 && b.length > 12) {
		// Random payload behind a plausible header: same SSRC, nearby sequence number, odd timestamp.
		const seq = (b.readUInt16BE(2) + Math.floor(Math.random() * 40) - 20) & 0xffff;
		const ts = Math.random() < 0.5 ? b.readUInt32BE(4) : Math.floor(Math.random() * 0xffffffff);
		return buildRtp({ payloadType: b[1]! & 0x7f, marker: Math.random() < 0.3, sequenceNumber: seq, timestamp: ts, ssrc: b.readUInt32BE(8), payload: randomBytes(Math.floor(Math.random() * 1200)) });
	}
	if (r < 0.9) {
		// RTCP-looking garbage: an SR with a bad length, or a compound that overruns.
		const rtcp = randomBytes(8 + Math.floor(Math.random() * 60));
		rtcp[0] = 0x80 | Math.floor(Math.random() * 32);
		rtcp[1] = 192 + Math.floor(Math.random() * 32);
		return rtcp;
	}
	for (let i = 0; i < 4; i++) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
	return b;
}

describe('RTP ingest under hostile input', () => {
	let server: Server;
	const sockets: (Relay | dgram.Socket)[] = [];
	beforeAll(async () => {
		server = await startTestServer({ rtpIngest: { listenIp: '127.0.0.1' } });
	});
	afterEach(async () => {
		await stopAllFfmpeg();
		for (const s of sockets.splice(0)) s.close();
	});
	afterAll(async () => {
		await server.close();
	});

	it('keeps a good stream going while random and mutated packets hit its ports', async () => {
		const { body } = await postRtp(server, 'fuzz1');
		const pub = server.registry.get('fuzz1')!.publication!;
		let frames = 0;
		let audio = 0;
		pub.on('video', () => frames++);
		pub.on('audio', () => audio++);

		// A bystander stream on its own ports must not notice anything.
		const calm = await postRtp(server, 'calm1');
		const calmPub = server.registry.get('calm1')!.publication!;
		let calmFrames = 0;
		calmPub.on('video', () => calmFrames++);
		runFfmpeg(ffmpegRtpArgs(calm.body, { width: 320, height: 180 }));

		const vRelay = new Relay(body.video.port);
		const aRelay = new Relay(body.audio.port);
		sockets.push(vRelay, aRelay);
		const relayed: RtpAnswer = {
			...body,
			video: { ...body.video, port: await vRelay.open() },
			audio: { ...body.audio, port: await aRelay.open() },
		};
		// RTCP muxed onto the relayed port, so it shares the sender's address.
		const args = ffmpegRtpArgs(relayed, { width: 320, height: 180 }).map((a) =>
			a.startsWith('rtp://') ? `${a}&rtcpport=${a.match(/:(\d+)\?/)![1]}` : a,
		);
		const ff = runFfmpeg(args);
		await eventually(() => frames >= 10 && audio >= 10, 20_000);

		const stranger = dgram.createSocket('udp4');
		sockets.push(stranger);
		await new Promise<void>((r) => stranger.bind(0, '127.0.0.1', () => r()));
		const ports = [body.video.port, body.video.rtcpPort, body.audio.port, body.audio.rtcpPort];
		const framesBefore = frames;
		const deadline = Date.now() + 4000;
		let sent = 0;
		// Bounded in count and time: at most 3000 bad datagrams over 4 s (~600/s, six times the real packet rate).
		while (Date.now() < deadline && sent < 3000) {
			for (let i = 0; i < 12; i++) {
				const relay = Math.random() < 0.5 ? vRelay : aRelay;
				const bad = mutate(relay.recent.length > 0 ? pick(relay.recent) : undefined);
				if (Math.random() < 0.8) relay.inject(bad, Math.random() < 0.85 ? relay.target : relay.target + 1);
				else stranger.send(bad, pick(ports), '127.0.0.1');
				sent++;
			}
			await sleep(20);
		}
		const framesDuringFuzz = frames - framesBefore;
		// The good sender keeps getting frames through: spoofed packets with its own
		// SSRC and address spoil some frames (no receiver can tell them apart), and
		// each keyframe repairs the damage.
		expect(framesDuringFuzz).toBeGreaterThan(10);
		const afterFuzz = frames;
		await eventually(() => frames >= afterFuzz + 25, 10_000);

		const session = server.rtpIngest!.session('fuzz1')!;
		const stats = session.stats();
		const bad = stats.video.dropped + stats.audio.dropped + stats.video.frames.malformedPackets;
		expect(bad).toBeGreaterThan(sent / 4);
		expect(stats.video.malformed + stats.audio.malformed).toBeGreaterThan(0);
		expect(stats.video.foreign + stats.audio.foreign).toBeGreaterThan(0);
		expect(stats.video.malformedRtcp + stats.audio.malformedRtcp).toBeGreaterThan(0);
		expect(session.senders.video).toBe(`127.0.0.1:${relayed.video.port}`);
		expect((await fetch(`${baseUrl(server)}/healthz`)).status).toBe(200);
		expect(calmFrames).toBeGreaterThan(50);
		const calmStats = server.rtpIngest!.session('calm1')!.stats();
		expect(calmStats.video.dropped + calmStats.audio.dropped).toBe(0);
		expect(calmStats.video.frames.framesDropped).toBe(0);
		await ff.stop();
	});
});
