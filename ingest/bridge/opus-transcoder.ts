import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { TypedEmitter } from '../../server/common/emitter.js';
import { ClosedError } from '../../server/common/errors.js';
import type { Logger } from '../../server/common/logger.js';
import { SupervisedProcess } from '../../server/common/process.js';
import type { AacConfig } from '../../server/core/codecs/audio.js';
import type { AudioFrame } from '../../server/core/media.js';
import { ChildInput } from './child-input.js';
import { aacFrameTag, aacSequenceHeaderTag, flvHeader } from './flv.js';
import { opusPacketSamples } from './opus.js';
import { parseRtpHeader } from './rtp.js';
import type { TranscoderHooks } from './video-transcoder.js';

/**
 * libopus's look-ahead with `-application lowdelay` (restricted low delay:
 * 2.5 ms; the OpusHead pre-skip ffmpeg writes for it). The first decoded
 * samples of the stream are this much encoder delay, so an output packet's
 * audio starts this many samples before its position in the output.
 */
export const OPUS_LOWDELAY_LOOKAHEAD = 120;

const RATE = 48000;
const PAYLOAD_TYPE = 111;

export interface OpusTranscoderOptions {
	ffmpegPath: string;
	logger: Logger;
	config: AacConfig;
	bitrate: number;
	/** 10 or 20 ms Opus frames. */
	frameDurationMs?: 10 | 20;
	/** Input frames waiting for a busy encoder before the oldest are dropped. */
	queueCapacity?: number;
	hooks?: TranscoderHooks;
}

/** One Opus packet, stamped on the publisher's timeline. */
export interface OpusPacket {
	data: Buffer;
	/** Publisher time (ms) of the packet's first sample. */
	pts: number;
	/** Samples at 48 kHz. */
	samples: number;
	/** receivedAt of the newest input frame whose audio is in the packet. */
	receivedAt: number;
}

export interface OpusTranscoderStats {
	restarts: number;
	framesIn: number;
	framesDropped: number;
	packetsOut: number;
	packetsLost: number;
}

export interface OpusTranscoderEvents extends Record<string, unknown[]> {
	packet: [packet: OpusPacket];
	close: [];
}

/** An input frame's place in the encoder's continuous sample stream. */
interface Segment {
	/** First sample, in 48 kHz samples since the child started. */
	start: number;
	length: number;
	pts: number;
	receivedAt: number;
}

/**
 * AAC to Opus through an ffmpeg child. AAC goes in as FLV audio tags; Opus
 * comes back as RTP over loopback UDP, one packet per datagram, with no
 * muxer buffering in between.
 *
 * ffmpeg's output timestamps are not used: ffmpeg joins the decoded samples
 * into one continuous stream, so we do the same bookkeeping here. Each input
 * frame we write occupies a known span of that stream; each Opus packet
 * covers a known span too (its TOC gives the duration), shifted by the
 * encoder look-ahead. A packet's publisher time is the time of the input
 * sample its audio starts with, so Opus lands on the same timeline as the
 * video, gaps in the input included, and lip sync holds.
 */
export class OpusTranscoder extends TypedEmitter<OpusTranscoderEvents> {
	readonly stats: OpusTranscoderStats = { restarts: 0, framesIn: 0, framesDropped: 0, packetsOut: 0, packetsLost: 0 };
	readonly #opts: Required<Omit<OpusTranscoderOptions, 'hooks'>>;
	readonly #hooks: TranscoderHooks;
	readonly #logger: Logger;
	readonly #socket: dgram.Socket;
	readonly #input: ChildInput;
	readonly #samplesPerFrame48: number;
	#proc: SupervisedProcess | null = null;
	#closed = false;
	// State of the current child run.
	#segments: Segment[] = [];
	#inPos = 0;
	#outPos = 0;
	#runSsrc: number | null = null;
	#lastSeq = -1;
	#lastSamples = 0;
	#tsBase = 0;
	#lastInPts: number | null = null;

	private constructor(opts: OpusTranscoderOptions, socket: dgram.Socket) {
		super();
		this.#opts = { frameDurationMs: 10, queueCapacity: 24, ...opts };
		this.#hooks = opts.hooks ?? {};
		this.#logger = opts.logger.child({ component: 'opus-transcoder' });
		this.setListenerErrorLogger(this.#logger);
		this.#socket = socket;
		const c = opts.config;
		// HE-AAC (explicit SBR/PS): each frame is 2048 output samples at the extended rate.
		const samples = c.objectType === 5 || c.objectType === 29 ? c.samplesPerFrame * 2 : c.samplesPerFrame;
		this.#samplesPerFrame48 = (samples * RATE) / c.sampleRate;
		this.#input = new ChildInput(this.#opts.queueCapacity, () => {
			this.stats.framesDropped++;
			this.#hooks.dropped?.('bridge-opus-transcoder', 1);
		});
	}

	/** Starts the encoder; frames pushed before it runs wait in the bounded queue. */
	static create(opts: OpusTranscoderOptions): OpusTranscoder {
		const socket = dgram.createSocket('udp4');
		const t = new OpusTranscoder(opts, socket);
		socket.on('error', (err) => t.#logger.warn({ err }, 'opus socket error'));
		socket.on('message', (msg) => t.#onRtp(msg));
		socket.bind(0, '127.0.0.1', () => {
			if (t.#closed) return;
			// Room for a second or more of packets if the event loop stalls under load.
			try {
				socket.setRecvBufferSize(1024 * 1024);
			} catch {
				// the OS may cap it; the default still works
			}
			t.#start();
		});
		return t;
	}

	get pid(): number | undefined {
		return this.#proc?.child?.pid;
	}

	get closed(): boolean {
		return this.#closed;
	}

	#args(): string[] {
		const port = this.#socket.address().port;
		const o = this.#opts;
		return [
			'-hide_banner', '-loglevel', 'error', '-nostats',
			// AAC from FLV needs no probing: the AudioSpecificConfig is in the first tag.
			'-probesize', '32', '-analyzeduration', '0', '-flags', 'low_delay',
			'-f', 'flv', '-i', 'pipe:0',
			'-map', '0:a:0',
			'-c:a', 'libopus', '-application', 'lowdelay', '-frame_duration', String(o.frameDurationMs),
			'-b:a', String(o.bitrate), '-ar', String(RATE), '-ac', '2',
			'-f', 'rtp', '-payload_type', String(PAYLOAD_TYPE), '-rtpflags', 'skip_rtcp', '-flush_packets', '1',
			`rtp://127.0.0.1:${port}?pkt_size=1400&rtcpport=${port}`,
		];
	}

	#start(): void {
		const proc = SupervisedProcess.create({
			name: 'opus-transcoder',
			command: this.#opts.ffmpegPath,
			args: () => this.#args(),
			logger: this.#logger,
		});
		this.#proc = proc;
		this.#hooks.process?.('bridge-opus-transcoder', proc);
		proc.on('spawn', (child) => this.#onSpawn(child));
		proc.on('crash', () => {
			this.stats.restarts++;
			// Audio queued while the encoder is down would come out late: start afresh.
			this.#input.detach();
			this.#input.clear();
		});
		// The first 'spawn' fired inside create(), before our listener existed.
		if (proc.child?.pid !== undefined) this.#onSpawn(proc.child);
	}

	#onSpawn(child: ChildProcess): void {
		this.#segments = [];
		this.#inPos = 0;
		this.#outPos = 0;
		this.#runSsrc = null;
		this.#lastSeq = -1;
		this.#lastInPts = null;
		// ffmpeg prints the SDP of its RTP output on stdout.
		child.stdout?.resume();
		if (!child.stdin) return;
		this.#input.attach(child.stdin, [flvHeader(false, true), aacSequenceHeaderTag(0, this.#opts.config.asc)]);
	}

	/** Queues one AAC frame for the encoder. */
	push(frame: AudioFrame): void {
		if (this.#closed) throw new ClosedError('opus transcoder');
		this.stats.framesIn++;
		if (this.#lastInPts === null) this.#tsBase = frame.pts;
		// FLV timestamps only keep ffmpeg's demuxer content: they are not read back.
		const ts = Math.max(0, frame.pts - this.#tsBase);
		this.#lastInPts = frame.pts;
		const pts = frame.pts;
		const receivedAt = frame.receivedAt;
		this.#input.push({
			data: aacFrameTag(ts, frame.data),
			onWrite: () => {
				const start = this.#inPos;
				this.#inPos += this.#samplesPerFrame48;
				// Publisher times are often whole milliseconds (RTMP): a frame within
				// a couple of them of where the previous one ended continues it, so
				// Opus timestamps advance by exact sample counts; a real gap starts anew.
				const prev = this.#segments[this.#segments.length - 1];
				const expected = prev ? prev.pts + (prev.length * 1000) / RATE : null;
				const at = expected !== null && Math.abs(pts - expected) < 2 ? expected : pts;
				this.#segments.push({ start, length: this.#samplesPerFrame48, pts: at, receivedAt });
				// Bounded even if the encoder never answers: a few seconds of audio.
				if (this.#segments.length > 500) this.#segments.splice(0, this.#segments.length - 500);
			},
		});
	}

	#onRtp(msg: Buffer): void {
		if (this.#closed) return;
		let h;
		try {
			h = parseRtpHeader(msg);
		} catch {
			return;
		}
		if (h.payloadType !== PAYLOAD_TYPE) return;
		// Each ffmpeg run picks a new SSRC: a late packet of a dead run is not ours to count.
		if (this.#runSsrc === null) this.#runSsrc = h.ssrc;
		else if (h.ssrc !== this.#runSsrc) return;
		if (this.#lastSeq >= 0) {
			const gap = (h.sequenceNumber - this.#lastSeq - 1 + 0x10000) & 0xffff;
			if (gap > 0 && gap < 1000) {
				this.stats.packetsLost += gap;
				this.#outPos += gap * this.#lastSamples;
			} else if (gap >= 1000) {
				return; // old or duplicate
			}
		}
		this.#lastSeq = h.sequenceNumber;
		const data = msg.subarray(h.payloadOffset, h.payloadEnd);
		let samples: number;
		try {
			samples = opusPacketSamples(data);
		} catch {
			return;
		}
		this.#lastSamples = samples;
		const start = this.#outPos - OPUS_LOWDELAY_LOOKAHEAD;
		this.#outPos += samples;
		const pts = this.#ptsAt(start);
		const receivedAt = this.#receivedAtOf(start + samples - 1);
		// Drop segments wholly before this packet: later packets start later.
		let drop = 0;
		while (drop < this.#segments.length - 1) {
			const s = this.#segments[drop] as Segment;
			if (s.start + s.length > start) break;
			drop++;
		}
		if (drop > 0) this.#segments.splice(0, drop);
		if (pts === null) return;
		this.stats.packetsOut++;
		this.emit('packet', { data: Buffer.from(data), pts, samples, receivedAt });
	}

	#ptsAt(pos: number): number | null {
		const segs = this.#segments;
		const first = segs[0];
		if (!first) return null;
		let seg = first;
		for (const s of segs) {
			if (s.start > pos) break;
			seg = s;
		}
		return seg.pts + ((pos - seg.start) * 1000) / RATE;
	}

	#receivedAtOf(pos: number): number {
		const segs = this.#segments;
		for (const s of segs) if (pos < s.start + s.length) return s.receivedAt;
		return segs[segs.length - 1]?.receivedAt ?? performance.now();
	}

	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		this.#input.detach();
		this.#input.clear();
		await this.#proc?.close();
		try {
			this.#socket.close();
		} catch {
			// never bound
		}
		this.emit('close');
		this.removeAllListeners();
	}
}
