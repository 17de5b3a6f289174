import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type { MediaKind } from '../shared/protocol.js';
import { H264Depacketizer, OggOpusWriter } from './depacketize.js';

export interface DecodeStats {
	videoFrames: number;
	width: number | null;
	height: number | null;
	audioFrames: number;
	audioSamples: number;
	sampleRate: number | null;
	channels: number | null;
	/** performance.now() of the first decoded picture. */
	firstVideoFrameAt: number | null;
	/** ffmpeg lines that report a decoding problem. */
	errors: number;
	lastErrors: string[];
	/** Bytes not handed to a decoder that fell behind. */
	droppedBytes: number;
}

export function emptyDecodeStats(): DecodeStats {
	return {
		videoFrames: 0,
		width: null,
		height: null,
		audioFrames: 0,
		audioSamples: 0,
		sampleRate: null,
		channels: null,
		firstVideoFrameAt: null,
		errors: 0,
		lastErrors: [],
		droppedBytes: 0,
	};
}

const ERROR_LINE = /error|corrupt|concealing|missing picture|non-existing|invalid data/i;
/** A decoder this far behind is not keeping up; what does not fit is dropped and counted. */
const MAX_PENDING_BYTES = 8 * 1024 * 1024;

/** One ffmpeg reading a byte stream on stdin and reporting each decoded frame. */
class FfmpegSink {
	readonly #child: ChildProcess;
	readonly #exited: Promise<void>;
	readonly #stats: DecodeStats;

	constructor(ffmpegPath: string, kind: MediaKind, stats: DecodeStats) {
		this.#stats = stats;
		const input = kind === 'video' ? ['-f', 'h264'] : ['-f', 'ogg'];
		const filter = kind === 'video' ? ['-vf', 'showinfo'] : ['-af', 'ashowinfo'];
		const args = [
			'-hide_banner', '-loglevel', 'info', '-nostdin',
			// Small probes so decoding starts with the first packets; not
			// `-fflags nobuffer`, which throws the probed packets (the keyframe) away.
			'-flags', 'low_delay', '-probesize', '32', '-analyzeduration', '0', '-fpsprobesize', '0',
			...input, '-i', 'pipe:0', ...filter, '-f', 'null', '-',
		];
		this.#child = spawn(ffmpegPath, args, { stdio: ['pipe', 'ignore', 'pipe'] });
		this.#child.on('error', () => undefined);
		this.#child.stdin?.on('error', () => undefined);
		this.#exited = new Promise((resolve) => this.#child.once('exit', () => resolve()));
		let partial = '';
		this.#child.stderr?.setEncoding('utf8');
		this.#child.stderr?.on('data', (chunk: string) => {
			const lines = (partial + chunk).split('\n');
			partial = lines.pop() ?? '';
			for (const line of lines) this.#onLine(line);
		});
	}

	#onLine(line: string): void {
		const s = this.#stats;
		if (line.includes('Parsed_showinfo')) {
			const m = / n:\s*\d+ .*? s:(\d+)x(\d+)/.exec(line);
			if (!m) return;
			s.videoFrames++;
			s.width = Number(m[1]);
			s.height = Number(m[2]);
			s.firstVideoFrameAt ??= performance.now();
			return;
		}
		if (line.includes('Parsed_ashowinfo')) {
			const m = /channels:(\d+).*? rate:(\d+) nb_samples:(\d+)/.exec(line);
			if (!m) return;
			s.audioFrames++;
			s.channels = Number(m[1]);
			s.sampleRate = Number(m[2]);
			s.audioSamples += Number(m[3]);
			return;
		}
		if (ERROR_LINE.test(line)) {
			s.errors++;
			s.lastErrors.push(line.trim());
			if (s.lastErrors.length > 20) s.lastErrors.shift();
		}
	}

	write(chunks: Buffer[]): void {
		const stdin = this.#child.stdin;
		if (!stdin || stdin.destroyed || chunks.length === 0) return;
		if (stdin.writableLength > MAX_PENDING_BYTES) {
			for (const c of chunks) this.#stats.droppedBytes += c.length;
			return;
		}
		stdin.write(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
	}

	async close(): Promise<void> {
		const c = this.#child;
		if (c.exitCode !== null || c.signalCode !== null) return;
		const t = setTimeout(() => c.kill('SIGKILL'), 2000);
		c.kill('SIGTERM');
		await this.#exited;
		clearTimeout(t);
	}
}

/**
 * Decodes what a viewer receives with ffmpeg, for tests that need to know the
 * media really decodes, and for time to first frame: H.264 is depacketized to
 * Annex B and Opus wrapped in Ogg, each piped into an ffmpeg that reports
 * every decoded picture (size) and audio frame (rate, channels). One decoder
 * lives as long as its viewer, across re-consumes.
 */
export class MediaDecoder {
	readonly stats: DecodeStats = emptyDecodeStats();
	readonly #ffmpegPath: string;
	readonly #h264 = new H264Depacketizer();
	readonly #ogg = new OggOpusWriter();
	#video: FfmpegSink | null = null;
	#audio: FfmpegSink | null = null;
	#closed = false;

	constructor(opts: { ffmpegPath?: string } = {}) {
		this.#ffmpegPath = opts.ffmpegPath ?? 'ffmpeg';
	}

	/** Starts both ffmpeg children now, so their start-up is not part of time to first frame. */
	start(): void {
		if (this.#closed) return;
		this.#video ??= new FfmpegSink(this.#ffmpegPath, 'video', this.stats);
		this.#audio ??= new FfmpegSink(this.#ffmpegPath, 'audio', this.stats);
	}

	/** One received RTP packet's payload (audio: Opus, video: H.264). */
	push(kind: MediaKind, payload: Buffer, seq: number, marker: boolean, channels = 2): void {
		if (this.#closed) return;
		if (kind === 'video') {
			this.#video ??= new FfmpegSink(this.#ffmpegPath, 'video', this.stats);
			this.#video.write(this.#h264.push(payload, seq, marker));
		} else {
			this.#audio ??= new FfmpegSink(this.#ffmpegPath, 'audio', this.stats);
			this.#audio.write(this.#ogg.push(payload, channels));
		}
	}

	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		await Promise.all([this.#video?.close(), this.#audio?.close()]);
	}
}
