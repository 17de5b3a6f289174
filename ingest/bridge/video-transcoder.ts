import type { ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { TypedEmitter } from '../../server/common/emitter.js';
import { ClosedError } from '../../server/common/errors.js';
import type { Logger } from '../../server/common/logger.js';
import { SupervisedProcess } from '../../server/common/process.js';
import type { VideoConfig, VideoFrame } from '../../server/core/media.js';
import { FLV_TAG, FlvDemuxer } from '../rtmp/flv.js';
import { ChildInput } from './child-input.js';
import { FlvReader, avcFrameTag, avcSequenceHeaderTag, flvHeader } from './flv.js';
import { DelayStats } from './stats.js';
import type { DelaySnapshot } from './stats.js';

/** The profile-level-id the transcoder's output is announced with: Constrained Baseline, which every WebRTC player decodes. */
export const TRANSCODE_PROFILE_LEVEL_ID = '42e01f';

export interface VideoTranscoderOptions {
	ffmpegPath: string;
	logger: Logger;
	/** The publisher's video configuration. */
	input: VideoConfig;
	fps: number;
	preset: string;
	/** 0: chosen from the resolution and frame rate. */
	bitrateKbps: number;
	keyframeIntervalMs: number;
	/**
	 * Frames to decode first (the current GOP, from its keyframe), so output
	 * starts at once instead of at the next keyframe.
	 */
	initialFrames?: readonly VideoFrame[];
	/** Frames up to this publisher time were already sent another way: decode them, do not encode them. */
	startAfterPts?: number | null;
	/** Compressed frames waiting for a busy decoder before a resync; default two seconds' worth. */
	decoderQueue?: number;
	/** Raw pictures waiting for a busy encoder before the oldest are dropped. */
	encoderQueue?: number;
	/** A retiring encoder's frames still in flight are awaited this long. */
	retireTimeoutMs?: number;
	/**
	 * Decoded pictures this much older than their arrival are not encoded
	 * (most of them; see #onDecoded): how the pipeline sheds a backlog.
	 */
	maxLagMs?: number;
	hooks?: TranscoderHooks;
}

/** For metrics: every child started, every frame a bounded queue dropped. */
export interface TranscoderHooks {
	process?: (kind: string, proc: SupervisedProcess) => void;
	dropped?: (component: string, n: number) => void;
}

export interface VideoTranscoderStats {
	framesIn: number;
	/** Compressed frames not decoded: decoder input overflow, or waiting for a keyframe after one. */
	framesDroppedIn: number;
	/** Raw pictures dropped because an encoder did not keep up. */
	rawDropped: number;
	/** Decoded pictures not encoded because they were already late (backlog shed). */
	staleSkipped: number;
	/** Frames lost inside a crashed or timed-out encoder. */
	framesLost: number;
	framesOut: number;
	keyframesForced: number;
	decoderRestarts: number;
	encoderRestarts: number;
	/** Encoder processes started (two at start, one more per forced keyframe). */
	encodersStarted: number;
}

export interface VideoTranscoderEvents extends Record<string, unknown[]> {
	/** An encoded frame on the publisher's timeline, with the encoder configuration it needs. */
	frame: [frame: VideoFrame, config: VideoConfig];
	close: [];
}

/** Bitrate for a resolution when none is configured: ~0.08 bits per pixel, 300 kbit/s to 8 Mbit/s. */
export function autoBitrateKbps(width: number, height: number, fps: number): number {
	const kbps = Math.round((width * height * Math.min(Math.max(fps, 1), 60) * 0.08) / 1000);
	return Math.max(300, Math.min(8000, kbps));
}

interface FrameMeta {
	pts: number;
	receivedAt: number;
	/** When the raw picture went into an encoder's pipe. */
	submittedAt?: number;
}
const DUMMY: unique symbol = Symbol('dummy');
type FifoEntry = FrameMeta | typeof DUMMY;

interface Output {
	frame: VideoFrame;
	config: VideoConfig;
}

/** One libx264 process. Fed raw pictures; its n-th output is its n-th input. */
class Encoder {
	readonly generation: number;
	readonly proc: SupervisedProcess;
	readonly input: ChildInput;
	/** What was written, in order; outputs are matched to it one to one. */
	fifo: FifoEntry[] = [];
	/** The warm-up picture came back: the next picture will be an IDR. */
	ready = false;
	retiring = false;
	retireTimer: NodeJS.Timeout | null = null;
	/** Outputs waiting for an older encoder to finish first. */
	held: Output[] = [];
	config: VideoConfig | null = null;
	#demux = new FlvDemuxer();
	readonly #reader: FlvReader;
	readonly #owner: VideoTranscoder;

	constructor(owner: VideoTranscoder, generation: number, proc: SupervisedProcess, queue: number) {
		this.#owner = owner;
		this.generation = generation;
		this.proc = proc;
		this.input = new ChildInput(queue, () => {
			owner.stats.rawDropped++;
			owner.hooks.dropped?.('bridge-video-encoder', 1);
		});
		this.#reader = new FlvReader((tag) => {
			if (tag.type !== FLV_TAG.VIDEO) return;
			const ev = this.#demux.video(tag.timestamp, tag.body, performance.now());
			if (ev.type === 'videoConfig') this.config = ev.config;
			else if (ev.type === 'video') owner.onEncoded(this, ev.frame);
		});
	}

	get pid(): number | undefined {
		return this.proc.child?.pid;
	}

	/** Real frames written but not yet back. */
	get inFlight(): number {
		let n = 0;
		for (const e of this.fifo) if (e !== DUMMY) n++;
		return n;
	}

	onSpawn(child: ChildProcess, dummy: Buffer): void {
		this.#owner.stats.framesLost += this.inFlight;
		this.ready = false;
		this.#demux = new FlvDemuxer();
		this.#reader.reset();
		child.stdout?.on('data', (chunk: Buffer) => {
			try {
				this.#reader.push(chunk);
			} catch (err) {
				this.#owner.logger.warn({ err, generation: this.generation }, 'unreadable encoder output; restarting it');
				if (!this.proc.closed) this.proc.restart();
			}
		});
		if (!child.stdin) return;
		// A warm-up picture: x264 initialises on it, and `-force_key_frames
		// expr:eq(n,1)` makes the first real picture after it an IDR.
		this.fifo = [DUMMY];
		this.input.attach(child.stdin, [dummy]);
	}

	/** Queues a raw picture (the parts of one frame as read from the decoder). */
	submit(parts: readonly Buffer[], meta: FrameMeta): void {
		this.input.push({
			data: parts,
			onWrite: () => {
				this.fifo.push({ ...meta, submittedAt: performance.now() });
			},
		});
	}

	async close(): Promise<void> {
		if (this.retireTimer) clearTimeout(this.retireTimer);
		this.retireTimer = null;
		this.input.detach();
		this.input.clear();
		await this.proc.close();
	}
}

/**
 * H.264 in, Constrained Baseline H.264 without B-frames out, with a
 * keyframe on demand.
 *
 * ffmpeg's CLI cannot be told "keyframe now" while it runs, so decoding and
 * encoding are split: one ffmpeg decodes the publisher's video to raw
 * pictures, and the pictures are written into a libx264 ffmpeg. A second,
 * warm encoder waits beside it, already initialised on a throw-away picture
 * and set to make its next picture an IDR. A keyframe request switches the
 * pictures to the warm encoder (its first output is the IDR), lets the old
 * one finish the pictures it has, retires it, and starts a new warm one.
 *
 * Timestamps: the decoder gets FLV with the publisher's times (-copyts), and
 * a second output of the same decoder (`framecrc` of a 2x2 crop, nearly
 * free) reports the presentation time of every decoded picture, in order.
 * Each encoder's n-th output is its n-th input (no B-frames, no look-ahead,
 * no frame dropping), so output frames get the publisher's times back
 * exactly: audio stays in sync and HLS gets the same timeline.
 */
export class VideoTranscoder extends TypedEmitter<VideoTranscoderEvents> {
	readonly stats: VideoTranscoderStats = {
		framesIn: 0,
		framesDroppedIn: 0,
		rawDropped: 0,
		staleSkipped: 0,
		framesLost: 0,
		framesOut: 0,
		keyframesForced: 0,
		decoderRestarts: 0,
		encoderRestarts: 0,
		encodersStarted: 0,
	};
	readonly logger: Logger;
	readonly hooks: TranscoderHooks;
	/** Where the time goes: arrival to decoded picture, picture into the encoder to encoded frame. */
	readonly #stageDelays = { decode: new DelayStats(256), encode: new DelayStats(256) };
	readonly width: number;
	readonly height: number;
	readonly fps: number;
	readonly bitrateKbps: number;
	readonly gopFrames: number;
	readonly #opts: VideoTranscoderOptions;
	readonly #frameSize: number;
	readonly #dummy: Buffer;
	readonly #decoderInput: ChildInput;
	#decoder: SupervisedProcess | null = null;
	#active: Encoder | null = null;
	#standby: Encoder | null = null;
	readonly #retiring: Encoder[] = [];
	#generation = 0;
	#closed = false;
	#keyframePending = false;
	// Input side.
	#gop: VideoFrame[] = [];
	#gopBytes = 0;
	#gopValid = false;
	#waitKeyframe = true;
	#flvBase: number | null = null;
	readonly #pending = new Map<number, FrameMeta>();
	// Decoder output side (per decoder run).
	#rawParts: Buffer[] = [];
	#rawFill = 0;
	#rawFrames: Buffer[][] = [];
	#ptsLines: number[] = [];
	#crcText = '';
	#lastSubmittedPts: number;
	#lastEmittedPts = -Infinity;
	#staleRun = 0;

	private constructor(opts: VideoTranscoderOptions) {
		super();
		this.#opts = opts;
		this.logger = opts.logger.child({ component: 'video-transcoder' });
		this.hooks = opts.hooks ?? {};
		this.setListenerErrorLogger(this.logger);
		// libx264 wants even dimensions for 4:2:0.
		this.width = opts.input.width & ~1;
		this.height = opts.input.height & ~1;
		this.fps = opts.fps > 0 && opts.fps <= 240 ? opts.fps : 30;
		this.bitrateKbps = opts.bitrateKbps > 0 ? opts.bitrateKbps : autoBitrateKbps(this.width, this.height, this.fps);
		this.gopFrames = Math.max(1, Math.round((opts.keyframeIntervalMs / 1000) * this.fps));
		this.#frameSize = this.width * this.height * 1.5;
		this.#dummy = Buffer.alloc(this.#frameSize, 0x80);
		this.#lastSubmittedPts = opts.startAfterPts ?? -Infinity;
		// Two seconds of frames: decoding is cheap and catches up fast (a slow
		// start under load); lag is shed after decoding, where dropping costs
		// nothing (see #onDecoded). Only a decoder stuck for longer resyncs.
		this.#decoderInput = new ChildInput(opts.decoderQueue ?? Math.max(30, Math.round(this.fps * 2)), () => this.#resync());
		if (opts.initialFrames && opts.initialFrames.length > 0 && opts.initialFrames[0]?.keyframe) {
			for (const f of opts.initialFrames) this.#remember(f);
		}
	}

	static create(opts: VideoTranscoderOptions): VideoTranscoder {
		const t = new VideoTranscoder(opts);
		t.#startDecoder();
		t.#active = t.#spawnEncoder();
		t.#standby = t.#spawnEncoder();
		t.logger.info(
			{ width: t.width, height: t.height, fps: t.fps, kbps: t.bitrateKbps, gop: t.gopFrames, preset: opts.preset },
			'video transcoder started',
		);
		return t;
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** Child PIDs, for tests and CPU accounting. */
	pids(): { decoder: number | undefined; encoders: number[] } {
		const encoders = [this.#active, this.#standby, ...this.#retiring].flatMap((e) => (e?.pid === undefined ? [] : [e.pid]));
		return { decoder: this.#decoder?.child?.pid, encoders };
	}

	/** Per-stage delays (ms): decode = arrival to decoded picture; encode = picture written to encoded frame back. */
	stageDelays(): { decode: DelaySnapshot; encode: DelaySnapshot } {
		return { decode: this.#stageDelays.decode.snapshot(), encode: this.#stageDelays.encode.snapshot() };
	}

	/** The input configuration this transcoder was built for. */
	get input(): VideoConfig {
		return this.#opts.input;
	}

	// ---- input -------------------------------------------------------------

	/** One compressed frame of the publisher, in decode order. */
	push(frame: VideoFrame): void {
		if (this.#closed) throw new ClosedError('video transcoder');
		this.stats.framesIn++;
		this.#remember(frame);
		if (this.#waitKeyframe) {
			if (!frame.keyframe) {
				this.stats.framesDroppedIn++;
				return;
			}
			this.#waitKeyframe = false;
		}
		this.#feed(frame);
	}

	/** Keeps the current GOP, so a restarted decoder catches up at once. */
	#remember(frame: VideoFrame): void {
		if (frame.keyframe) {
			this.#gop = [];
			this.#gopBytes = 0;
			this.#gopValid = true;
		}
		if (!this.#gopValid) return;
		let bytes = 0;
		for (const n of frame.nalus) bytes += n.length;
		this.#gop.push(frame);
		this.#gopBytes += bytes;
		if (this.#gopBytes > 32 * 1024 * 1024 || this.#gop.length > 1200) {
			this.#gop = [];
			this.#gopBytes = 0;
			this.#gopValid = false;
		}
	}

	/** `now`: write past the queue bound (a catch-up burst, bounded by the GOP cap). */
	#feed(frame: VideoFrame, now = false): void {
		if (this.#flvBase === null) this.#flvBase = Math.floor(frame.dts);
		const dts = Math.round(frame.dts - this.#flvBase);
		const pts = Math.round(frame.pts - this.#flvBase);
		this.#pending.set(pts, { pts: frame.pts, receivedAt: frame.receivedAt });
		if (this.#pending.size > 2000) {
			const first = this.#pending.keys().next();
			if (!first.done) this.#pending.delete(first.value);
		}
		const tag = avcFrameTag(dts, pts - dts, frame.keyframe, frame.nalus);
		if (now) this.#decoderInput.writeNow(tag);
		else this.#decoderInput.push({ data: tag });
	}

	/** The decoder fell behind: what is queued cannot be decoded without what was dropped. */
	#resync(): void {
		const n = 1 + this.#decoderInput.queued;
		this.stats.framesDroppedIn += n;
		this.hooks.dropped?.('bridge-video-decoder', n);
		this.#decoderInput.clear();
		this.#waitKeyframe = true;
		this.logger.warn('decoder input overflow; waiting for the next keyframe');
	}

	// ---- decoder -----------------------------------------------------------

	#decoderArgs(): string[] {
		const { width, height } = this;
		const crop = width !== this.#opts.input.width || height !== this.#opts.input.height ? ['-vf', `crop=${width}:${height}:0:0`] : [];
		// `-threads 1` everywhere: frame threading (the h264 decoder's, and the
		// rawvideo encoder's too) holds each picture back by a frame per extra thread.
		return [
			'-hide_banner', '-loglevel', 'error', '-nostats',
			'-threads', '1', '-probesize', '32', '-analyzeduration', '0',
			'-f', 'flv', '-i', 'pipe:0', '-copyts',
			'-map', '0:v:0', '-fps_mode', 'passthrough', ...crop, '-pix_fmt', 'yuv420p',
			'-c:v', 'rawvideo', '-threads', '1', '-f', 'rawvideo', '-flush_packets', '1', 'pipe:1',
			// The same pictures' times, one line each, in the same order.
			'-map', '0:v:0', '-fps_mode', 'passthrough', '-vf', 'crop=2:2:0:0', '-pix_fmt', 'yuv420p',
			'-c:v', 'rawvideo', '-threads', '1', '-enc_time_base', '1:1000', '-f', 'framecrc', '-flush_packets', '1', 'pipe:3',
		];
	}

	#startDecoder(): void {
		const proc = SupervisedProcess.create({
			name: 'h264-decoder',
			command: this.#opts.ffmpegPath,
			args: () => this.#decoderArgs(),
			logger: this.logger,
			spawnOptions: { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] },
		});
		this.#decoder = proc;
		this.hooks.process?.('bridge-h264-decoder', proc);
		proc.on('spawn', (child) => this.#onDecoderSpawn(child));
		proc.on('crash', () => {
			this.stats.decoderRestarts++;
			this.#decoderInput.detach();
		});
		if (proc.child?.pid !== undefined) this.#onDecoderSpawn(proc.child);
	}

	#onDecoderSpawn(child: ChildProcess): void {
		this.#rawParts = [];
		this.#rawFill = 0;
		this.#rawFrames = [];
		this.#ptsLines = [];
		this.#crcText = '';
		this.#decoderInput.clear();
		child.stdout?.on('data', (chunk: Buffer) => this.#onRaw(chunk));
		const times = child.stdio[3] as Readable | null | undefined;
		times?.setEncoding('latin1');
		times?.on('data', (text: string) => this.#onTimes(text));
		times?.on('error', () => undefined);
		if (!child.stdin) return;
		this.#decoderInput.attach(child.stdin, [flvHeader(true, false), avcSequenceHeaderTag(0, this.#opts.input.avcC)]);
		// Catch up from the GOP's keyframe; what was already encoded is skipped on the way out.
		if (this.#gopValid && this.#gop.length > 0) {
			this.#waitKeyframe = false;
			for (const f of this.#gop) this.#feed(f, true);
		} else {
			this.#waitKeyframe = true;
		}
	}

	#onRaw(chunk: Buffer): void {
		let off = 0;
		const size = this.#frameSize;
		while (off < chunk.length) {
			const take = Math.min(size - this.#rawFill, chunk.length - off);
			this.#rawParts.push(chunk.subarray(off, off + take));
			this.#rawFill += take;
			off += take;
			if (this.#rawFill === size) {
				this.#rawFrames.push(this.#rawParts);
				this.#rawParts = [];
				this.#rawFill = 0;
			}
		}
		// Pictures without times would only pile up if the two outputs disagreed.
		if (this.#rawFrames.length > 16) this.#rawFrames.splice(0, this.#rawFrames.length - 16);
		this.#pair();
	}

	#onTimes(text: string): void {
		this.#crcText += text;
		let nl: number;
		while ((nl = this.#crcText.indexOf('\n')) !== -1) {
			const line = this.#crcText.slice(0, nl);
			this.#crcText = this.#crcText.slice(nl + 1);
			if (line.startsWith('#') || line.trim() === '') continue;
			// stream, dts, pts, duration, size, hash
			const pts = Number(line.split(',')[2]);
			if (Number.isFinite(pts)) this.#ptsLines.push(pts);
		}
		if (this.#ptsLines.length > 64) this.#ptsLines.splice(0, this.#ptsLines.length - 64);
		this.#pair();
	}

	#pair(): void {
		while (this.#rawFrames.length > 0 && this.#ptsLines.length > 0) {
			this.#onDecoded(this.#rawFrames.shift() as Buffer[], this.#ptsLines.shift() as number);
		}
	}

	#onDecoded(parts: Buffer[], flvPts: number): void {
		if (this.#closed) return;
		let meta = this.#pending.get(flvPts);
		for (const k of this.#pending.keys()) if (k <= flvPts) this.#pending.delete(k);
		meta ??= { pts: (this.#flvBase ?? 0) + flvPts, receivedAt: performance.now() };
		if (meta.pts <= this.#lastSubmittedPts) return; // catch-up picture, already out
		this.#stageDelays.decode.record(performance.now() - meta.receivedAt);
		// A picture already late is not worth the encoder's time: skipping it
		// sheds a backlog (a slow start, a CPU spike) in a few frames instead
		// of carrying the delay on. Every fourth one is still encoded, so a
		// machine that stays too slow shows a low frame rate, not a still.
		if (performance.now() - meta.receivedAt > (this.#opts.maxLagMs ?? 400) && ++this.#staleRun < 4) {
			this.stats.staleSkipped++;
			return;
		}
		this.#staleRun = 0;
		this.#lastSubmittedPts = meta.pts;
		if (this.#keyframePending && this.#standby?.ready) this.#switch();
		this.#active?.submit(parts, meta);
	}

	// ---- encoders ----------------------------------------------------------

	#encoderArgs(): string[] {
		const o = this.#opts;
		const kbps = `${this.bitrateKbps}k`;
		return [
			'-hide_banner', '-loglevel', 'error', '-nostats',
			// One thread for the rawvideo decoder (frame threads would add a frame of delay);
			// x264 picks its own (sliced threads with zerolatency, no added delay).
			'-threads', '1', '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${this.width}x${this.height}`,
			'-framerate', String(Math.round(this.fps * 1000) / 1000), '-i', 'pipe:0',
			'-c:v', 'libx264', '-preset', o.preset, '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p',
			'-g', String(this.gopFrames), '-keyint_min', String(this.gopFrames), '-sc_threshold', '0', '-bf', '0',
			'-forced-idr', '1', '-force_key_frames', 'expr:eq(n,1)',
			'-b:v', kbps, '-maxrate', kbps, '-bufsize', kbps,
			'-fps_mode', 'passthrough', '-f', 'flv', '-flush_packets', '1', 'pipe:1',
		];
	}

	#spawnEncoder(): Encoder {
		const generation = ++this.#generation;
		this.stats.encodersStarted++;
		const proc = SupervisedProcess.create({
			name: `h264-encoder-${generation}`,
			command: this.#opts.ffmpegPath,
			args: () => this.#encoderArgs(),
			logger: this.logger,
		});
		this.hooks.process?.('bridge-h264-encoder', proc);
		const enc = new Encoder(this, generation, proc, this.#opts.encoderQueue ?? 3);
		proc.on('spawn', (child) => enc.onSpawn(child, this.#dummy));
		proc.on('crash', () => this.#onEncoderCrash(enc));
		if (proc.child?.pid !== undefined) enc.onSpawn(proc.child, this.#dummy);
		return enc;
	}

	#onEncoderCrash(enc: Encoder): void {
		this.stats.encoderRestarts++;
		enc.input.detach();
		enc.ready = false;
		// What it had in flight is gone with it.
		this.stats.framesLost += enc.inFlight;
		enc.fifo = [];
		if (enc.retiring) {
			this.#finishRetiring(enc);
		} else if (enc === this.#active && this.#standby?.ready) {
			// The warm encoder takes over at once with an IDR; no need to wait for the restart.
			this.#switch();
		}
	}

	/** Asks for an IDR as soon as possible (the next decoded picture, once an encoder is warm). */
	requestKeyframe(): void {
		if (this.#closed) return;
		this.#keyframePending = true;
	}

	#switch(): void {
		const old = this.#active;
		this.#active = this.#standby;
		this.#standby = this.#closed ? null : this.#spawnEncoder();
		this.#keyframePending = false;
		this.stats.keyframesForced++;
		if (old) this.#retire(old);
	}

	#retire(enc: Encoder): void {
		enc.retiring = true;
		this.#retiring.push(enc);
		if (enc.inFlight === 0) {
			this.#finishRetiring(enc);
			return;
		}
		enc.retireTimer = setTimeout(() => this.#finishRetiring(enc), this.#opts.retireTimeoutMs ?? 1000);
	}

	#finishRetiring(enc: Encoder): void {
		const i = this.#retiring.indexOf(enc);
		if (i === -1) return;
		this.#retiring.splice(i, 1);
		this.stats.framesLost += enc.inFlight;
		enc.fifo = [];
		void enc.close();
		this.#flushHeld();
	}

	/** Outputs leave in encoder order: older (retiring) encoders first. */
	#head(): Encoder | null {
		return this.#retiring[0] ?? this.#active;
	}

	#flushHeld(): void {
		const head = this.#head();
		if (!head) return;
		const held = head.held;
		head.held = [];
		for (const o of held) this.#emitFrame(o);
	}

	/** @internal an encoder produced a frame. */
	onEncoded(enc: Encoder, encoded: VideoFrame): void {
		if (this.#closed) return;
		const meta = enc.fifo.shift();
		if (meta === undefined) return;
		if (meta === DUMMY) {
			enc.ready = true;
			return;
		}
		const config = enc.config;
		if (!config) return;
		if (meta.submittedAt !== undefined) this.#stageDelays.encode.record(performance.now() - meta.submittedAt);
		const out: Output = {
			frame: { kind: 'video', pts: meta.pts, dts: meta.pts, keyframe: encoded.keyframe, nalus: encoded.nalus, receivedAt: meta.receivedAt },
			config,
		};
		if (enc === this.#head()) this.#emitFrame(out);
		else enc.held.push(out);
		if (enc.retiring && enc.inFlight === 0) this.#finishRetiring(enc);
	}

	#emitFrame(out: Output): void {
		if (out.frame.pts <= this.#lastEmittedPts) return;
		this.#lastEmittedPts = out.frame.pts;
		this.stats.framesOut++;
		this.emit('frame', out.frame, out.config);
	}

	/** Kills and reaps every child. Idempotent. */
	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		this.#decoderInput.detach();
		this.#decoderInput.clear();
		const encoders = [this.#active, this.#standby, ...this.#retiring].filter((e): e is Encoder => e !== null);
		this.#active = null;
		this.#standby = null;
		this.#retiring.length = 0;
		await Promise.all([this.#decoder?.close(), ...encoders.map((e) => e.close())]);
		this.#gop = [];
		this.#pending.clear();
		this.emit('close');
		this.removeAllListeners();
	}
}
