import { randomInt } from 'node:crypto';
import type { types as ms } from 'mediasoup';
import type { Publication } from '../../server/core/stream.js';
import { io as ioClient } from 'socket.io-client';
import type { Socket as ClientSocket } from 'socket.io-client';
import type { Server } from '../../server/server.js';
import { runFfmpeg } from '../helpers/ffmpeg.js';
import { baseUrl } from '../helpers/server.js';
import type { RunningFfmpeg } from '../helpers/ffmpeg.js';

export const VIDEO_PT = 102;
export const AUDIO_PT = 101;

export interface RtpSourceOptions {
	width?: number;
	height?: number;
	fps?: number;
	/** Keyframe interval in frames; one second by default. */
	gop?: number;
	videoBitrateKbps?: number;
	audio?: boolean;
	/**
	 * Instead of encoding live: a pre-encoded MPEG-TS file (H.264 baseline with
	 * in-band SPS/PPS, Opus) sent in real time, looped, without re-encoding.
	 */
	file?: string;
	/** Register a publication in the stream core too (default true), so the stream is live there. */
	registerPublication?: boolean;
}

export interface RtpPublisher {
	readonly name: string;
	readonly ffmpeg: RunningFfmpeg;
	readonly publication: Publication | null;
	readonly producers: ms.Producer[];
	readonly videoSsrc: number;
	readonly audioSsrc: number;
	/** Resolves once every producer has received RTP from ffmpeg (the encoder is up). */
	flowing(timeoutMs?: number): Promise<void>;
	/** Stops ffmpeg, closes the producers and ends the publication (idempotent). */
	stop(reason?: string): Promise<void>;
}

/**
 * Stands in for the ingest bridge: ffmpeg sends H.264 (constrained baseline)
 * and Opus as RTP into PlainTransports (comedia) on the stream's origin
 * router, the producers are handed to StreamRouters like the bridge does, and
 * a publication makes the stream live in the core. Ending the publication
 * (stop, or a takeover by another publisher) closes the producers and calls
 * clearProducers, which is what viewers see as the stream going offline.
 */
export async function publishRtp(server: Server, name: string, o: RtpSourceOptions = {}): Promise<RtpPublisher> {
	const { routers, registry } = server;
	const audio = o.audio ?? true;
	let stopped = false;
	let ffmpeg: RunningFfmpeg | null = null;
	const transports: ms.PlainTransport[] = [];
	const producers: ms.Producer[] = [];
	const videoSsrc = randomInt(1, 2 ** 31);
	const audioSsrc = randomInt(1, 2 ** 31);

	const stop = async (reason = 'publisher stopped'): Promise<void> => {
		if (stopped) return;
		stopped = true;
		// Like the bridge: clear first, so viewers hear `gone` while the producers still exist.
		routers.clearProducers(name, reason);
		for (const t of transports) t.close();
		publication?.end(reason);
		await ffmpeg?.stop();
	};
	const publication =
		(o.registerPublication ?? true)
			? registry.publish(name, { protocol: 'rtp', remoteAddress: '127.0.0.1', kick: (reason) => void stop(reason) })
			: null;
	publication?.on('end', (reason) => void stop(reason));

	try {
		const origin = await routers.origin(name);
		const plain = (): Promise<ms.PlainTransport> =>
			// ffmpeg sends RTP and RTCP from two local ports; with rtcpMux, comedia
			// would latch onto whichever came first.
			origin.router.createPlainTransport({ listenIp: { ip: '127.0.0.1' }, rtcpMux: false, comedia: true });
		const vt = await plain();
		transports.push(vt);
		producers.push(
			await vt.produce({
				kind: 'video',
				rtpParameters: {
					codecs: [
						{
							mimeType: 'video/H264',
							payloadType: VIDEO_PT,
							clockRate: 90000,
							parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 },
							rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }],
						},
					],
					encodings: [{ ssrc: videoSsrc }],
				},
			}),
		);
		let at: ms.PlainTransport | null = null;
		if (audio) {
			at = await plain();
			transports.push(at);
			producers.push(
				await at.produce({
					kind: 'audio',
					rtpParameters: {
						codecs: [{ mimeType: 'audio/opus', payloadType: AUDIO_PT, clockRate: 48000, channels: 2, parameters: { 'sprop-stereo': 1 } }],
						encodings: [{ ssrc: audioSsrc }],
					},
				}),
			);
		}
		const rtpUrl = (t: ms.PlainTransport): string => {
			const rtcp = t.rtcpTuple?.localPort ?? t.tuple.localPort + 1;
			return `rtp://127.0.0.1:${t.tuple.localPort}?rtcpport=${rtcp}&pkt_size=1200`;
		};
		const args = ['-hide_banner', '-loglevel', 'error', '-nostdin'];
		let videoMap = '0:v:0';
		let audioMap = '1:a:0';
		let videoCodec: string[];
		let audioCodec: string[];
		if (o.file) {
			args.push('-re', '-stream_loop', '-1', '-i', o.file);
			audioMap = '0:a:0';
			videoCodec = ['-c:v', 'copy'];
			audioCodec = ['-c:a', 'copy'];
		} else {
			const w = o.width ?? 640;
			const h = o.height ?? 360;
			const fps = o.fps ?? 25;
			const gop = o.gop ?? fps;
			args.push('-re', '-f', 'lavfi', '-i', `testsrc2=size=${w}x${h}:rate=${fps}`);
			if (audio) args.push('-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000');
			videoCodec = [
				'-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
				'-profile:v', 'baseline', '-g', String(gop), '-keyint_min', String(gop), '-sc_threshold', '0',
				'-b:v', `${o.videoBitrateKbps ?? 800}k`,
			];
			audioCodec = ['-c:a', 'libopus', '-b:a', '64k', '-ac', '2', '-ar', '48000'];
			videoMap = '0:v:0';
		}
		args.push('-map', videoMap, ...videoCodec, '-payload_type', String(VIDEO_PT), '-ssrc', String(videoSsrc), '-f', 'rtp', rtpUrl(vt));
		if (at) {
			args.push('-map', audioMap, ...audioCodec, '-payload_type', String(AUDIO_PT), '-ssrc', String(audioSsrc), '-f', 'rtp', rtpUrl(at));
		}
		if (stopped) throw new Error('stopped while starting');
		ffmpeg = runFfmpeg(args);
		await routers.setProducers(name, producers);
	} catch (err) {
		await stop('failed to start');
		throw err;
	}
	const running = ffmpeg;
	return {
		name,
		ffmpeg: running,
		publication,
		producers,
		videoSsrc,
		audioSsrc,
		stop,
		flowing: async (timeoutMs = 15_000) => {
			const deadline = Date.now() + timeoutMs;
			for (;;) {
				const stats = await Promise.all(producers.map((p) => p.getStats()));
				if (stats.every((s) => s.some((x) => x.packetCount > 0))) return;
				if (Date.now() > deadline) throw new Error(`no RTP from ffmpeg within ${timeoutMs} ms: ${running.stderr()}`);
				await new Promise((r) => setTimeout(r, 50));
			}
		},
	};
}

/** Transports, consumers and routers alive on every worker: for leak checks. */
export async function sfuCounts(server: Server): Promise<{ routers: number; transports: number; consumers: number; producers: number }> {
	let routers = 0;
	let transports = 0;
	let consumers = 0;
	let producers = 0;
	for (const slot of server.pool.slots) {
		const w = (await slot.worker.dump()) as unknown as { routerIds: string[] };
		routers += w.routerIds.length;
	}
	for (const stream of server.registry.list()) {
		for (const sr of await server.routers.routers(stream.name)) {
			const d = (await sr.router.dump()) as unknown as {
				transportIds: string[];
				mapConsumerIdProducerId: unknown[] | Record<string, string>;
				mapProducerIdConsumerIds: unknown[] | Record<string, unknown>;
			};
			transports += d.transportIds.length;
			consumers += Array.isArray(d.mapConsumerIdProducerId) ? d.mapConsumerIdProducerId.length : Object.keys(d.mapConsumerIdProducerId).length;
			producers += Array.isArray(d.mapProducerIdConsumerIds) ? d.mapProducerIdConsumerIds.length : Object.keys(d.mapProducerIdConsumerIds).length;
		}
	}
	return { routers, transports, consumers, producers };
}

/** Which worker holds the router a transport id lives on, from the workers' own dumps. */
export async function workerOfTransport(server: Server, transportId: string): Promise<number | null> {
	for (const stream of server.registry.list()) {
		for (const sr of await server.routers.routers(stream.name)) {
			const d = (await sr.router.dump()) as unknown as { transportIds: string[] };
			if (d.transportIds.includes(transportId)) return sr.slot.index;
		}
	}
	return null;
}

/**
 * A value as it comes off the wire, before anyone checked its shape: tests
 * poke at answers and events of any form, and assert on them.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Wire = any;

/** A bare socket.io client for poking at the protocol. */
export interface RawClient {
	socket: ClientSocket;
	/** Sends a request with an ack and resolves with the answer (whatever it is). */
	req(name: string, payload?: unknown, timeoutMs?: number): Promise<Wire>;
	/** Events of one name received so far. */
	events(name: string): Wire[];
	close(): void;
}

export async function rawClient(server: Server): Promise<RawClient> {
	const socket = ioClient(baseUrl(server), { transports: ['websocket'], reconnection: false, forceNew: true });
	const received = new Map<string, unknown[]>();
	socket.onAny((name: string, ...args: unknown[]) => {
		const list = received.get(name) ?? [];
		list.push(args[0]);
		received.set(name, list);
	});
	await new Promise<void>((resolve, reject) => {
		socket.once('connect', () => resolve());
		socket.once('connect_error', reject);
	});
	return {
		socket,
		req: (name, payload, timeoutMs = 10_000) =>
			payload === undefined ? socket.timeout(timeoutMs).emitWithAck(name) : socket.timeout(timeoutMs).emitWithAck(name, payload),
		events: (name) => received.get(name) ?? [],
		close: () => socket.disconnect(),
	};
}
