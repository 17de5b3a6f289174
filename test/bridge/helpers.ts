import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { types } from 'mediasoup';
import { parseRtcp } from '../../ingest/bridge/rtcp.js';
import type { ParsedSenderReport } from '../../ingest/bridge/rtcp.js';
import { parseRtpHeader } from '../../ingest/bridge/rtp.js';
import { runFfmpeg } from '../helpers/ffmpeg.js';
import { childPids } from '../helpers/server.js';

export type Router = types.Router;
export type Producer = types.Producer;

/** Is this H.264 RTP payload the start of an IDR (single NAL, STAP-A or FU-A start)? */
export function startsIdr(payload: Buffer): boolean {
	const type = (payload[0] ?? 0) & 0x1f;
	if (type === 5) return true;
	if (type === 28) return ((payload[1] ?? 0) & 0x80) !== 0 && ((payload[1] ?? 0) & 0x1f) === 5;
	if (type === 24) {
		let off = 1;
		while (off + 2 <= payload.length) {
			const len = payload.readUInt16BE(off);
			if (((payload[off + 2] ?? 0) & 0x1f) === 5) return true;
			off += 2 + len;
		}
	}
	return false;
}

/** Does this payload carry an SPS (the start of a decodable stream)? */
function carriesSps(payload: Buffer): boolean {
	const type = (payload[0] ?? 0) & 0x1f;
	if (type === 7) return true;
	if (type === 24) return ((payload[3] ?? 0) & 0x1f) === 7;
	return false;
}

/**
 * A test viewer on the SFU: a PlainTransport consumer sending to a UDP
 * socket here. Counts packets, notes IDRs, and can relay to a decoder
 * (video from its first keyframe on, as a real receiver would start).
 */
export class RtpProbe {
	readonly kind: 'audio' | 'video';
	packets = 0;
	bytes = 0;
	readonly idrTimes: number[] = [];
	readonly timestamps: number[] = [];
	payloadType = 0;
	/** The latest RTCP sender report mediasoup sent for this consumer. */
	lastSr: ParsedSenderReport | null = null;
	consumer!: types.Consumer;
	transport!: types.PlainTransport;
	#socket!: dgram.Socket;
	#relayPort: number | null = null;
	#relaying = false;
	#onPacket: ((msg: Buffer, at: number) => void) | null = null;

	private constructor(kind: 'audio' | 'video') {
		this.kind = kind;
	}

	static async create(router: Router, producer: Producer, opts: { paused?: boolean } = {}): Promise<RtpProbe> {
		const probe = new RtpProbe(producer.kind);
		const socket = dgram.createSocket('udp4');
		await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
		probe.#socket = socket;
		socket.on('message', (msg) => probe.#onMessage(msg));
		const transport = await router.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true, comedia: false });
		await transport.connect({ ip: '127.0.0.1', port: socket.address().port });
		probe.transport = transport;
		probe.consumer = await transport.consume({
			producerId: producer.id,
			rtpCapabilities: { codecs: router.rtpCapabilities.codecs, headerExtensions: [] },
			paused: opts.paused ?? false,
		});
		probe.payloadType = probe.consumer.rtpParameters.codecs[0]!.payloadType;
		return probe;
	}

	/** Called for every RTP packet, with its arrival time (performance.now()). */
	onPacket(fn: (msg: Buffer, at: number) => void): void {
		this.#onPacket = fn;
	}

	#onMessage(msg: Buffer): void {
		const at = performance.now();
		const pt = msg[1] ?? 0;
		if (pt >= 192 && pt <= 223) {
			try {
				for (const p of parseRtcp(msg)) if (p.type === 'sr') this.lastSr = p;
			} catch {
				// not ours to judge
			}
			return;
		}
		let h;
		try {
			h = parseRtpHeader(msg);
		} catch {
			return;
		}
		this.packets++;
		this.bytes += msg.length;
		this.timestamps.push(h.timestamp);
		if (this.timestamps.length > 5000) this.timestamps.splice(0, 2500);
		const payload = msg.subarray(h.payloadOffset, h.payloadEnd);
		if (this.kind === 'video' && startsIdr(payload)) this.idrTimes.push(at);
		this.#onPacket?.(msg, at);
		if (this.#relayPort !== null) {
			if (!this.#relaying && (this.kind === 'audio' || carriesSps(payload) || startsIdr(payload))) this.#relaying = true;
			if (this.#relaying) this.#socket.send(msg, this.#relayPort, '127.0.0.1');
		}
	}

	relayTo(port: number | null): void {
		this.#relayPort = port;
		this.#relaying = false;
	}

	close(): void {
		this.transport.close();
		this.#socket.close();
	}
}

/** Resolves once something (ffmpeg) has bound the UDP port. */
async function waitUntilBound(port: number, timeoutMs: number): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	while (Date.now() < deadline) {
		const s = dgram.createSocket('udp4');
		const free = await new Promise<boolean>((r) => {
			s.once('error', () => r(false));
			s.bind(port, '127.0.0.1', () => r(true));
		});
		s.close();
		if (!free) return;
		await new Promise((r) => setTimeout(r, 50));
	}
	throw new Error(`nothing bound UDP port ${port} within ${timeoutMs} ms`);
}

/** The wall-clock time (Unix ms) a sender report maps an RTP timestamp to. */
export function wallOfRtp(sr: ParsedSenderReport, rtpTimestamp: number, clockRate: number): number {
	const d = ((((rtpTimestamp - sr.rtpTimestamp) % 2 ** 32) + 2 ** 32) % 2 ** 32);
	const signed = d >= 2 ** 31 ? d - 2 ** 32 : d;
	return sr.ntpMs + (signed / clockRate) * 1000;
}

/** An even UDP port whose successor is free too (ffmpeg's RTP input binds port and port+1). */
export async function freeUdpPortPair(): Promise<number> {
	for (let i = 0; i < 50; i++) {
		const a = dgram.createSocket('udp4');
		const port = await new Promise<number>((r) => a.bind(0, '127.0.0.1', () => r(a.address().port)));
		if (port % 2 !== 0 || port > 65000) {
			a.close();
			continue;
		}
		const b = dgram.createSocket('udp4');
		const ok = await new Promise<boolean>((r) => {
			b.once('error', () => r(false));
			b.bind(port + 1, '127.0.0.1', () => r(true));
		});
		a.close();
		b.close();
		if (ok) return port;
	}
	throw new Error('no free UDP port pair');
}

export interface DecodeResult {
	videoFrames: number;
	audioFrames: number;
	width: number | null;
	height: number | null;
	sampleRate: number | null;
	channels: string | null;
	/** ffmpeg's stderr at warning level and above. */
	stderr: string;
	/** The codec names ffmpeg saw (`#codec_id` lines name the output; the input is in stderr's stream info). */
	exitCode: number | null;
}

/**
 * Decodes what the probes receive with ffmpeg, through an SDP (as a plain
 * RTP receiver would), for `seconds` of media. Video is decoded to raw
 * pictures, audio to PCM; framecrc lists every decoded frame.
 */
export async function decodeProbes(video: RtpProbe | null, audio: RtpProbe | null, seconds: number): Promise<DecodeResult> {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-bridge-sdp-'));
	try {
		const lines = ['v=0', 'o=- 0 0 IN IP4 127.0.0.1', 's=bridge test', 'c=IN IP4 127.0.0.1', 't=0 0'];
		const vport = video ? await freeUdpPortPair() : 0;
		const aport = audio ? await freeUdpPortPair() : 0;
		if (video) lines.push(`m=video ${vport} RTP/AVP ${video.payloadType}`, `a=rtpmap:${video.payloadType} H264/90000`, `a=fmtp:${video.payloadType} packetization-mode=1`);
		if (audio) lines.push(`m=audio ${aport} RTP/AVP ${audio.payloadType}`, `a=rtpmap:${audio.payloadType} opus/48000/2`, `a=fmtp:${audio.payloadType} sprop-stereo=1`);
		const sdp = path.join(dir, 'recv.sdp');
		fs.writeFileSync(sdp, `${lines.join('\r\n')}\r\n`);
		const args = ['-hide_banner', '-loglevel', 'warning', '-nostdin', '-protocol_whitelist', 'file,udp,rtp', '-i', sdp, '-t', String(seconds)];
		if (video) args.push('-map', '0:v:0', '-c:v', 'rawvideo', '-pix_fmt', 'yuv420p');
		if (audio) args.push('-map', '0:a:0', '-c:a', 'pcm_s16le');
		args.push('-f', 'framecrc', 'pipe:1');
		const ff = runFfmpeg(args, { stdout: 'pipe' });
		let out = '';
		ff.child.stdout?.setEncoding('utf8');
		ff.child.stdout?.on('data', (d: string) => (out += d));
		// Relay only once ffmpeg listens, or the first keyframe would be lost.
		for (const port of [vport, aport].filter((p) => p > 0)) await waitUntilBound(port, 20_000);
		video?.relayTo(vport);
		audio?.relayTo(aport);
		const timer = setTimeout(() => void ff.stop(), (seconds + 25) * 1000);
		const exitCode = await ff.exited;
		clearTimeout(timer);
		video?.relayTo(null);
		audio?.relayTo(null);
		const header = (key: string, idx: number): string | null => new RegExp(`^#${key} ${idx}: (.+)$`, 'm').exec(out)?.[1]?.trim() ?? null;
		const types = [...out.matchAll(/^#media_type (\d+): (\w+)$/gm)].map((m) => ({ idx: Number(m[1]), type: m[2] }));
		const vIdx = types.find((t) => t.type === 'video')?.idx ?? -1;
		const aIdx = types.find((t) => t.type === 'audio')?.idx ?? -1;
		const count = (idx: number): number => out.split('\n').filter((l) => l.startsWith(`${idx},`)).length;
		const dims = vIdx >= 0 ? header('dimensions', vIdx) : null;
		const [w, h] = dims ? dims.split('x').map(Number) : [null, null];
		return {
			videoFrames: vIdx >= 0 ? count(vIdx) : 0,
			audioFrames: aIdx >= 0 ? count(aIdx) : 0,
			width: w ?? null,
			height: h ?? null,
			sampleRate: aIdx >= 0 ? Number(header('sample_rate', aIdx)) : null,
			channels: aIdx >= 0 ? header('channel_layout_name', aIdx) : null,
			stderr: ff.stderr(),
			exitCode,
		};
	} finally {
		fs.rmSync(dir, { recursive: true, force: true });
	}
}

/** Lines of ffmpeg's stderr that report a decoding problem. */
export function decodeErrors(stderr: string): string[] {
	return stderr
		.split('\n')
		.filter((l) => /error|corrupt|concealing|non-existing|missing|invalid|no frame|decode_slice/i.test(l));
}

/** ffmpeg processes that are children of this (test) process. */
export function ffmpegChildren(): number[] {
	return childPids().filter((pid) => {
		try {
			return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'ffmpeg';
		} catch {
			return false;
		}
	});
}
