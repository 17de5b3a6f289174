import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { FlvReader, H264Packetizer, RtpSender, buildSenderReport, parseRtpHeader } from '../../ingest/bridge/index.js';
import type { ParameterSets } from '../../ingest/bridge/index.js';
import { parseAvcC, splitLengthPrefixed } from '../../server/core/codecs/h264.js';
import { MSG, RtmpTestClient } from '../../test/rtmp/rtmp-client.js';
import { fillMarkPcm } from './audio-marks.js';
import { Background, drawTimecode } from './timecode.js';

export interface RtpDestination {
	ip: string;
	port: number;
	payloadType: number;
	ssrc: number;
}

/** One receiver of the probe's plain RTP: its ports, and whether it takes our RTCP sender reports (rtcp-mux). */
export interface RtpOutput {
	video: RtpDestination;
	audio?: RtpDestination;
	/** Send RTCP sender reports to the RTP ports (rtcp-mux), as a capture app's RTP stack does. */
	senderReports?: boolean;
}

/**
 * Where the probe publishes. Several targets get the same capture and the
 * same encoded pictures: RTMP carries AAC, plain RTP carries Opus, both
 * encoded from the same PCM on the same clock, so servers and paths compared
 * side by side see one feed.
 */
export type ProbeTarget = { kind: 'rtmp'; url: string } | { kind: 'rtp'; outputs: RtpOutput[] };

export interface ProbePublisherOptions {
	targets: ProbeTarget[];
	width?: number;
	height?: number;
	fps?: number;
	/** Keyframe interval in seconds. */
	gopSeconds?: number;
	bitrateKbps?: number;
	preset?: string;
	/** Audio with tone bursts at known capture instants (bench/probe/audio-marks.ts): AAC over RTMP, Opus over RTP. */
	audio?: boolean;
	ffmpegPath?: string;
}

export const PROBE_DEFAULTS = { width: 1280, height: 720, fps: 30, gopSeconds: 1, bitrateKbps: 2500, preset: 'veryfast' };
const AUDIO_RATE = 48000;
const AAC_FRAME = 1024;
/** libopus's look-ahead in restricted low-delay mode at 48 kHz: the first packet's audio starts this far before the first input sample. */
const OPUS_LOWDELAY_LOOKAHEAD = 120;
const SR_INTERVAL_MS = 500;
/** RTMP: a packet waits at most this long for the other track before it goes out of order. */
const MAX_INTERLEAVE_MS = 200;

/** ffmpeg arguments that encode raw frames from stdin the way the probe publishes. */
export function probeEncoderArgs(o: { width: number; height: number; fps: number; gopSeconds: number; bitrateKbps: number; preset: string }): string[] {
	const gop = Math.max(1, Math.round(o.gopSeconds * o.fps));
	return [
		'-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${o.width}x${o.height}`, '-r', String(o.fps), '-i', 'pipe:0',
		// Every frame handed over is encoded, none duplicated or dropped: the
		// probe matches output pictures to its capture times by count.
		'-fps_mode', 'passthrough',
		'-c:v', 'libx264', '-preset', o.preset, '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p',
		'-g', String(gop), '-keyint_min', String(gop), '-sc_threshold', '0', '-bf', '0',
		'-b:v', `${o.bitrateKbps}k`, '-maxrate', `${o.bitrateKbps}k`, '-bufsize', `${Math.round(o.bitrateKbps / 2)}k`,
	];
}

const wallNow = (): number => performance.timeOrigin + performance.now();

function ffmpeg(path: string, args: string[], onStderr: (s: string) => void): ChildProcess {
	const child = spawn(path, ['-hide_banner', '-loglevel', 'error', '-nostdin', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
	child.stdin?.on('error', () => undefined);
	child.stderr?.setEncoding('utf8').on('data', onStderr);
	return child;
}

/** Reads ADTS frames from a byte stream: the raw AAC frame and its AudioSpecificConfig. */
class AdtsReader {
	#buf: Buffer = Buffer.alloc(0);
	constructor(readonly onFrame: (asc: Buffer, frame: Buffer) => void) {}
	push(chunk: Buffer): void {
		this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
		let off = 0;
		const b = this.#buf;
		while (b.length - off >= 7) {
			if (b[off] !== 0xff || ((b[off + 1] ?? 0) & 0xf0) !== 0xf0) throw new Error('ADTS sync lost');
			const protectionAbsent = (b[off + 1] ?? 0) & 1;
			const len = (((b[off + 3] ?? 0) & 3) << 11) | ((b[off + 4] ?? 0) << 3) | ((b[off + 5] ?? 0) >> 5);
			if (b.length - off < len) break;
			const b2 = b[off + 2] ?? 0;
			const objectType = (b2 >> 6) + 1;
			const freq = (b2 >> 2) & 0xf;
			const channels = ((b2 & 1) << 2) | ((b[off + 3] ?? 0) >> 6);
			const asc = Buffer.from([(objectType << 3) | (freq >> 1), ((freq & 1) << 7) | (channels << 3)]);
			const header = protectionAbsent ? 7 : 9;
			this.onFrame(asc, Buffer.from(b.subarray(off + header, off + len)));
			off += len;
		}
		this.#buf = off === b.length ? Buffer.alloc(0) : b.subarray(off);
	}
}

interface RtmpPacket {
	type: number;
	/** Capture time, wall ms. */
	at: number;
	body: Buffer;
	queuedAt: number;
}

/**
 * RTMP out, as a capture app muxes: one connection, tags stamped with
 * capture times, audio and video interleaved by timestamp (a packet waits
 * for the other track to catch up, as OBS's and libavformat's muxers make
 * it wait), so the wire carries what OBS's does.
 */
class RtmpOut {
	readonly #client: RtmpTestClient;
	readonly #streamId: number;
	readonly #base: number;
	readonly #queues: { [k: number]: RtmpPacket[] } = { [MSG.AUDIO]: [], [MSG.VIDEO]: [] };
	readonly #interleave: boolean;
	readonly #timer: NodeJS.Timeout;
	#closed = false;

	private constructor(client: RtmpTestClient, streamId: number, base: number, interleave: boolean) {
		this.#client = client;
		this.#streamId = streamId;
		this.#base = base;
		this.#interleave = interleave;
		this.#timer = setInterval(() => this.#drain(), 20);
	}

	static async create(url: string, base: number, interleave: boolean): Promise<RtmpOut> {
		const u = new URL(url);
		const parts = u.pathname.split('/').filter(Boolean);
		const app = parts[0] ?? 'live';
		const name = parts.slice(1).join('/') + u.search;
		const client = await RtmpTestClient.connect(Number(u.port || 1935), { host: u.hostname });
		client.setChunkSize(4096);
		const streamId = await client.connectAndCreateStream(app);
		const status = await client.publish(streamId, name);
		if (status.code !== 'NetStream.Publish.Start') {
			client.close();
			throw new Error(`RTMP publish refused: ${JSON.stringify(status.code)}`);
		}
		return new RtmpOut(client, streamId, base, interleave);
	}

	/** Sequence headers: sent at once, at the stream's start. */
	header(type: number, body: Buffer): void {
		if (!this.#closed) this.#client.media(type, this.#streamId, 0, body);
	}

	push(type: number, at: number, body: Buffer): void {
		if (this.#closed) return;
		if (!this.#interleave) {
			this.#send({ type, at, body, queuedAt: 0 });
			return;
		}
		this.#queues[type]?.push({ type, at, body, queuedAt: wallNow() });
		this.#drain();
	}

	#drain(): void {
		const a = this.#queues[MSG.AUDIO] as RtmpPacket[];
		const v = this.#queues[MSG.VIDEO] as RtmpPacket[];
		const now = wallNow();
		for (;;) {
			const ha = a[0];
			const hv = v[0];
			let next: RtmpPacket[] | null = null;
			if (ha && hv) next = ha.at <= hv.at ? a : v;
			else if (ha && now - ha.queuedAt > MAX_INTERLEAVE_MS) next = a;
			else if (hv && now - hv.queuedAt > MAX_INTERLEAVE_MS) next = v;
			if (!next) break;
			this.#send(next.shift() as RtmpPacket);
		}
	}

	#send(p: RtmpPacket): void {
		if (this.#client.isClosed) return;
		this.#client.media(p.type, this.#streamId, Math.max(0, Math.round(p.at - this.#base)), p.body);
	}

	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		clearInterval(this.#timer);
		this.#client.close();
	}
}

/** One RTP stream to one receiver: sender, socket, sender reports on the capture clock. */
class RtpStreamOut {
	readonly sender: RtpSender;
	readonly #socket: dgram.Socket;
	readonly #dest: RtpDestination;
	readonly #reports: boolean;

	constructor(dest: RtpDestination, clockRate: number, reports: boolean) {
		this.#dest = dest;
		this.#reports = reports;
		this.sender = new RtpSender({ ssrc: dest.ssrc, payloadType: dest.payloadType, clockRate, maxPacketSize: 1400 });
		this.#socket = dgram.createSocket('udp4');
		this.#socket.on('error', () => undefined);
		this.sender.setSink((p) => this.#socket.send(p, dest.port, dest.ip));
	}

	/** RTP timestamps are capture times: one clock for both streams, and the SR maps it to NTP exactly. */
	report(): void {
		if (!this.#reports || this.sender.stats.packets === 0) return;
		const now = wallNow();
		const sr = buildSenderReport({
			ssrc: this.sender.ssrc,
			ntpMs: now,
			rtpTimestamp: this.sender.timestampOf(now),
			packetCount: this.sender.stats.packets,
			octetCount: this.sender.stats.payloadBytes,
			cname: 'subsecond-probe',
		});
		this.#socket.send(sr, this.#dest.port, this.#dest.ip);
	}

	close(): void {
		this.sender.setSink(null);
		this.#socket.close();
	}
}

/**
 * The probe's publisher, built like a capture app (OBS, a libavformat
 * desktop app): one capture clock stamps everything. Each video frame carries
 * the wall-clock time it was captured, in its pixels and as its timestamp; a
 * frame the encoder is too busy for is skipped and leaves a gap, later frames
 * keep their own times. Audio is generated live on the same clock, sample i
 * captured at `audioStart + i / 48 kHz`, with tone bursts at known capture
 * instants so that viewers can measure audio delay too. libx264 encodes the
 * pictures once; AAC (for RTMP) and Opus (for RTP) encode the same PCM.
 * Encoded packets are matched back to their capture times by count (one
 * picture in, one out; fixed-size audio frames) and sent with those stamps.
 */
export class ProbePublisher {
	readonly options: Required<Omit<ProbePublisherOptions, 'targets'>> & { targets: ProbeTarget[] };
	/** Sequence numbers handed to the encoder (frames not skipped), in order. */
	readonly sentSeqs: number[] = [];
	/**
	 * Per track, the capture time of every packet sent and when it left the
	 * publisher (wall ms): what a test checks the wire against.
	 */
	readonly sent: { video: { at: number; sentAt: number }[]; audio: { at: number; sentAt: number }[] } = { video: [], audio: [] };
	readonly #children: ChildProcess[] = [];
	readonly #captures: number[] = [];
	readonly #rtmp: RtmpOut[] = [];
	readonly #rtp: { video: RtpStreamOut; packetizer: H264Packetizer; audio: RtpStreamOut | null }[] = [];
	#params: ParameterSets | null = null;
	#nalLengthSize = 4;
	#frames = 0;
	#skipped = 0;
	#audioStart = 0;
	#samples = 0;
	#aacFrames = 0;
	#opusFirstTs: number | null = null;
	#opusSocket: dgram.Socket | null = null;
	readonly #timers: NodeJS.Timeout[] = [];
	#videoTimer: NodeJS.Timeout | null = null;
	#closed = false;
	#stderr = '';
	#error: Error | null = null;
	#rtmpBase = 0;

	private constructor(opts: ProbePublisherOptions) {
		this.options = { ...PROBE_DEFAULTS, audio: true, ffmpegPath: 'ffmpeg', ...opts };
	}

	static async create(opts: ProbePublisherOptions): Promise<ProbePublisher> {
		const p = new ProbePublisher(opts);
		try {
			await p.#start();
		} catch (err) {
			await p.close();
			throw err;
		}
		return p;
	}

	/** Frames handed to the encoder, and frames skipped because it was behind. */
	get stats(): { frames: number; skipped: number } {
		return { frames: this.#frames, skipped: this.#skipped };
	}

	get stderr(): string {
		return this.#stderr;
	}

	/** The wall-clock time (ms) that RTMP timestamp 0 stands for. */
	get rtmpBaseMs(): number {
		return this.#rtmpBase;
	}

	/** A failure after start (an encoder died, the RTMP connection dropped), or null. */
	get error(): Error | null {
		return this.#error;
	}

	readonly #onStderr = (s: string): void => {
		this.#stderr = (this.#stderr + s).slice(-4000);
	};

	async #start(): Promise<void> {
		const o = this.options;
		const start = wallNow();
		// RTMP timestamps count from a little before the capture started: the
		// first AAC frame's audio (encoder priming) begins before its first sample.
		const base = start - 100;
		this.#rtmpBase = base;
		const hasRtmp = o.targets.some((t) => t.kind === 'rtmp');
		const rtpOutputs = o.targets.flatMap((t) => (t.kind === 'rtp' ? t.outputs : []));
		for (const t of o.targets) if (t.kind === 'rtmp') this.#rtmp.push(await RtmpOut.create(t.url, base, o.audio));
		for (const out of rtpOutputs) {
			const video = new RtpStreamOut(out.video, 90000, out.senderReports ?? false);
			const audio = o.audio && out.audio ? new RtpStreamOut(out.audio, AUDIO_RATE, out.senderReports ?? false) : null;
			this.#rtp.push({ video, packetizer: new H264Packetizer(video.sender, 1200), audio });
		}
		if (this.#rtp.length) this.#timers.push(setInterval(() => this.#report(), SR_INTERVAL_MS));

		const video = ffmpeg(o.ffmpegPath, [...probeEncoderArgs(o), '-f', 'flv', '-flush_packets', '1', 'pipe:1'], this.#onStderr);
		this.#watch(video, 'video encoder');
		const flv = new FlvReader((tag) => this.#onVideoTag(tag.type, tag.body));
		video.stdout?.on('data', (d: Buffer) => flv.push(d));

		const aacOut: ChildProcess[] = [];
		if (o.audio) {
			const pcmIn = ['-f', 's16le', '-ar', String(AUDIO_RATE), '-ac', '2', '-i', 'pipe:0'];
			if (hasRtmp) {
				const aac = ffmpeg(o.ffmpegPath, [...pcmIn, '-c:a', 'aac', '-b:a', '96k', '-f', 'adts', '-flush_packets', '1', 'pipe:1'], this.#onStderr);
				this.#watch(aac, 'AAC encoder');
				const adts = new AdtsReader((asc, frame) => this.#onAac(asc, frame));
				aac.stdout?.on('data', (d: Buffer) => adts.push(d));
				aacOut.push(aac);
			}
			if (this.#rtp.some((r) => r.audio)) {
				const sock = dgram.createSocket('udp4');
				this.#opusSocket = sock;
				sock.on('message', (m) => this.#onOpusRtp(m));
				await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
				const port = sock.address().port;
				const opus = ffmpeg(
					o.ffmpegPath,
					[...pcmIn, '-c:a', 'libopus', '-application', 'lowdelay', '-frame_duration', '20', '-b:a', '96k',
						'-f', 'rtp', '-rtpflags', 'skip_rtcp', '-flush_packets', '1', `rtp://127.0.0.1:${port}?rtcpport=${port}&pkt_size=1400`],
					this.#onStderr,
				);
				this.#watch(opus, 'Opus encoder');
				opus.stdout?.resume();
				aacOut.push(opus);
			}
			this.#audioStart = start;
			this.#timers.push(setInterval(() => this.#captureAudio(aacOut), 10));
		}
		this.#runVideo(video, start);
	}

	#watch(child: ChildProcess, what: string): void {
		this.#children.push(child);
		child.once('exit', (code, signal) => {
			if (!this.#closed) this.#error ??= new Error(`${what} exited (${code ?? signal}): ${this.#stderr.trim()}`);
		});
	}

	#runVideo(encoder: ChildProcess, start: number): void {
		const { width, height, fps } = this.options;
		const ySize = width * height;
		const frame = Buffer.alloc((ySize * 3) / 2, 128);
		const luma = frame.subarray(0, ySize);
		const bg = new Background(width, height);
		const interval = 1000 / fps;
		let n = 0;
		const tick = (): void => {
			if (this.#closed) return;
			// A tick that came late still captures now; the ones it missed are gone.
			const due = Math.floor((wallNow() - start) / interval);
			if (due > n) {
				this.#skipped += due - n;
				n = due;
			}
			const stdin = encoder.stdin;
			if (stdin && !stdin.destroyed && stdin.writableLength < frame.length * 2) {
				const capturedAt = wallNow();
				bg.fill(luma, n);
				drawTimecode(luma, width, height, { timeMs: capturedAt, seq: n });
				// A copy: the next frame is painted while this one is still queued.
				stdin.write(Buffer.from(frame));
				this.#captures.push(capturedAt);
				this.#frames++;
				if (this.sentSeqs.length < 1_000_000) this.sentSeqs.push(n);
			} else {
				this.#skipped++;
			}
			n++;
			this.#videoTimer = setTimeout(tick, Math.max(0, start + n * interval - wallNow()));
		};
		tick();
	}

	#captureAudio(encoders: ChildProcess[]): void {
		if (this.#closed) return;
		const due = Math.floor(((wallNow() - this.#audioStart) * AUDIO_RATE) / 1000) - this.#samples;
		if (due <= 0) return;
		const pcm = new Int16Array(due * 2);
		fillMarkPcm(pcm, due, this.#audioStart + (this.#samples * 1000) / AUDIO_RATE, AUDIO_RATE);
		this.#samples += due;
		const buf = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
		for (const e of encoders) if (e.stdin && !e.stdin.destroyed) e.stdin.write(buf);
	}

	#onVideoTag(type: number, body: Buffer): void {
		if (type !== 9 || body.length < 5) return;
		const packetType = body[1];
		if (packetType === 0) {
			const avcc = parseAvcC(body.subarray(5));
			this.#params = { sps: avcc.sps, pps: avcc.pps };
			this.#nalLengthSize = avcc.nalLengthSize;
			for (const r of this.#rtmp) r.header(MSG.VIDEO, Buffer.from(body));
			return;
		}
		if (packetType !== 1) return;
		const at = this.#captures.shift();
		if (at === undefined) return;
		const keyframe = (body[0] ?? 0) >> 4 === 1;
		for (const r of this.#rtmp) r.push(MSG.VIDEO, at, Buffer.from(body));
		if (this.#rtp.length) {
			const nalus = splitLengthPrefixed(body.subarray(5), this.#nalLengthSize);
			for (const r of this.#rtp) r.packetizer.send(nalus, r.video.sender.timestampOf(at), keyframe, this.#params);
		}
		this.sent.video.push({ at, sentAt: wallNow() });
	}

	#onAac(asc: Buffer, frame: Buffer): void {
		if (this.#aacFrames === 0) for (const r of this.#rtmp) r.header(MSG.AUDIO, Buffer.concat([Buffer.from([0xaf, 0x00]), asc]));
		// Frame j decodes to input samples from (j - 1) * 1024 on: the encoder's
		// first frame is its 1024 samples of priming, which decoders play.
		const at = this.#audioStart + ((this.#aacFrames - 1) * AAC_FRAME * 1000) / AUDIO_RATE;
		this.#aacFrames++;
		for (const r of this.#rtmp) r.push(MSG.AUDIO, at, Buffer.concat([Buffer.from([0xaf, 0x01]), frame]));
		if (this.#rtmp.length) this.sent.audio.push({ at, sentAt: wallNow() });
	}

	#onOpusRtp(msg: Buffer): void {
		let h;
		try {
			h = parseRtpHeader(msg);
		} catch {
			return;
		}
		this.#opusFirstTs ??= h.timestamp;
		const offset = (h.timestamp - this.#opusFirstTs + 0x1_0000_0000) % 0x1_0000_0000;
		// The first packet's audio starts the encoder's look-ahead before the first input sample.
		const at = this.#audioStart + ((offset - OPUS_LOWDELAY_LOOKAHEAD) * 1000) / AUDIO_RATE;
		const payload = msg.subarray(h.payloadOffset, h.payloadEnd);
		for (const r of this.#rtp) r.audio?.sender.sendPayload(payload, false, r.audio.sender.timestampOf(at));
		if (!this.#rtmp.length) this.sent.audio.push({ at, sentAt: wallNow() });
	}

	#report(): void {
		for (const r of this.#rtp) {
			r.video.report();
			r.audio?.report();
		}
	}

	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		if (this.#videoTimer) clearTimeout(this.#videoTimer);
		for (const t of this.#timers) clearInterval(t);
		for (const r of this.#rtmp) r.close();
		for (const r of this.#rtp) {
			r.video.close();
			r.audio?.close();
		}
		this.#opusSocket?.close();
		await Promise.all(
			this.#children.map(async (c) => {
				if (c.exitCode !== null || c.signalCode !== null) return;
				const exited = new Promise<void>((r) => c.once('exit', () => r()));
				c.stdin?.end();
				c.kill('SIGTERM');
				const kill = setTimeout(() => c.kill('SIGKILL'), 2000);
				await exited;
				clearTimeout(kill);
			}),
		);
	}
}
