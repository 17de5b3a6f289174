import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import { TypedEmitter } from '../common/emitter.js';
import { ClosedError, Unsupported } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { SupervisedProcess } from '../common/process.js';
import { BoundedQueue } from '../common/queue.js';
import { buildAudioSpecificConfig, parseAudioSpecificConfig } from '../core/codecs/audio.js';
import type { AacConfig } from '../core/codecs/audio.js';
import type { AudioFrame } from '../core/media.js';
import { OGG_BOS, OGG_MAX_PACKET, oggPage, opusHead, opusPacketSamples, opusTags } from './ogg.js';

export interface OpusAacOptions {
	ffmpegPath: string;
	channels: number;
	logger: Logger;
	/** AAC bitrate, bits/s. */
	bitrate?: number;
	/** Opus packets held while ffmpeg is slow or restarting; the oldest are dropped. */
	queueCapacity?: number;
}

export interface OpusAacEvents extends Record<string, unknown[]> {
	/** One AAC-LC frame (no ADTS header) on the publisher's timeline. */
	frame: [frame: AudioFrame];
	close: [];
}

export interface OpusAacStats {
	packetsIn: number;
	framesOut: number;
	/** Packets dropped because the queue to ffmpeg was full. */
	dropped: number;
	/** Packets that were not valid Opus. */
	invalid: number;
	restarts: number;
}

/** ffmpeg's AAC encoder delays its output by one frame of priming samples. */
const AAC_ENCODER_DELAY = 1024;
const AAC_FRAME = 1024;
const RATE = 48_000;
/** A packet this far (ms) from where the sample count puts it starts a new time anchor. */
const ANCHOR_TOLERANCE_MS = 20;

interface Anchor {
	/** Input sample position (48 kHz samples fed to ffmpeg so far). */
	pos: number;
	/** Publisher time (ms) of that position. */
	ms: number;
}

/**
 * Opus to AAC-LC through an ffmpeg child, for HLS: Opus from RTP ingest is
 * packed into Ogg pages on ffmpeg's stdin and AAC comes back as ADTS on
 * stdout. ffmpeg sees one continuous stream; the times of the output frames
 * are rebuilt here from sample counts and the packets' own timestamps, so
 * gaps (lost packets, DTX, drops) keep audio and video in sync.
 */
export class OpusAacTranscoder extends TypedEmitter<OpusAacEvents> {
	readonly config: AacConfig;
	readonly #opts: OpusAacOptions;
	readonly #logger: Logger;
	readonly #queue: BoundedQueue<AudioFrame>;
	readonly #proc: SupervisedProcess;
	readonly #stats: Omit<OpusAacStats, 'dropped' | 'restarts'> = { packetsIn: 0, framesOut: 0, invalid: 0 };
	#stdin: Writable | null = null;
	#writable = false;
	#serial = 0;
	#pageSeq = 0;
	#fed = 0;
	#anchors: Anchor[] = [];
	#outFrames = 0;
	#adts: Buffer = Buffer.alloc(0);
	#closed = false;

	private constructor(opts: OpusAacOptions) {
		super();
		if (opts.channels < 1 || opts.channels > 2) {
			throw new Unsupported(`Opus with ${opts.channels} channels is not supported for HLS; publish mono or stereo`);
		}
		this.#opts = opts;
		this.#logger = opts.logger.child({ component: 'hls-opus-aac' });
		this.setListenerErrorLogger(this.#logger);
		this.config = parseAudioSpecificConfig(buildAudioSpecificConfig(RATE, opts.channels));
		this.#queue = new BoundedQueue(opts.queueCapacity ?? 250);
		this.#proc = SupervisedProcess.create({
			name: 'hls-opus-aac',
			command: opts.ffmpegPath,
			args: () => this.#args(),
			logger: this.#logger,
			initialBackoffMs: 200,
			maxBackoffMs: 5_000,
		});
		this.#proc.on('spawn', (child) => {
			if (!child.stdin || !child.stdout) return;
			this.#attach(child.stdin, child.stdout);
		});
		const first = this.#proc.child;
		if (first?.stdin && first.stdout) this.#attach(first.stdin, first.stdout);
	}

	/**
	 * Starts the ffmpeg child at once (frames follow their configuration in the
	 * same event loop turn); throws Unsupported for more than two channels.
	 */
	static create(opts: OpusAacOptions): OpusAacTranscoder {
		return new OpusAacTranscoder(opts);
	}

	get stats(): OpusAacStats {
		return { ...this.#stats, dropped: this.#queue.dropped, restarts: this.#proc.restarts };
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** The supervised ffmpeg child (for metrics). */
	get process(): SupervisedProcess {
		return this.#proc;
	}

	#args(): string[] {
		return [
			'-hide_banner',
			'-loglevel',
			'error',
			'-nostdin',
			// Start decoding at once: the Ogg headers say all there is to know.
			'-probesize',
			'32',
			'-analyzeduration',
			'0',
			'-fflags',
			'+nobuffer',
			'-f',
			'ogg',
			'-i',
			'pipe:0',
			'-vn',
			'-c:a',
			'aac',
			'-b:a',
			String(this.#opts.bitrate ?? 128_000),
			'-ar',
			String(RATE),
			'-ac',
			String(this.#opts.channels),
			'-f',
			'adts',
			'-flush_packets',
			'1',
			'pipe:1',
		];
	}

	#attach(stdin: Writable, stdout: NodeJS.ReadableStream): void {
		// A fresh child: a fresh Ogg stream and a fresh mapping of its output.
		this.#stdin = stdin;
		this.#writable = true;
		this.#serial = randomInt(1, 0x7fff_ffff);
		this.#pageSeq = 0;
		this.#fed = 0;
		this.#anchors = [];
		this.#outFrames = 0;
		this.#adts = Buffer.alloc(0);
		stdin.on('drain', () => {
			if (this.#stdin !== stdin) return;
			this.#writable = true;
			this.#pump();
		});
		stdin.on('close', () => {
			if (this.#stdin === stdin) {
				this.#stdin = null;
				this.#writable = false;
			}
		});
		stdout.on('data', (chunk: Buffer) => {
			if (this.#stdin === stdin) this.#onOutput(chunk);
		});
		this.#write(oggPage(opusHead(this.#opts.channels), { serial: this.#serial, sequence: this.#pageSeq++, granule: 0n, flags: OGG_BOS }));
		this.#write(oggPage(opusTags(), { serial: this.#serial, sequence: this.#pageSeq++, granule: 0n }));
		this.#pump();
	}

	/** Queues one Opus packet; never blocks, drops the oldest when ffmpeg falls behind. */
	push(frame: AudioFrame): void {
		if (this.#closed) throw new ClosedError('Opus to AAC transcoder');
		this.#stats.packetsIn++;
		this.#queue.push(frame);
		this.#pump();
	}

	#write(page: Buffer): void {
		if (!this.#stdin) return;
		if (!this.#stdin.write(page)) this.#writable = false;
	}

	#pump(): void {
		while (this.#writable && this.#stdin && this.#queue.size > 0) {
			const frame = this.#queue.shift() as AudioFrame;
			const samples = opusPacketSamples(frame.data);
			if (samples === 0 || frame.data.length > OGG_MAX_PACKET) {
				this.#stats.invalid++;
				continue;
			}
			const anchor = this.#anchors[this.#anchors.length - 1];
			const expected = anchor ? anchor.ms + ((this.#fed - anchor.pos) * 1000) / RATE : null;
			if (expected === null || Math.abs(frame.pts - expected) > ANCHOR_TOLERANCE_MS) {
				this.#anchors.push({ pos: this.#fed, ms: frame.pts });
			}
			this.#fed += samples;
			this.#write(oggPage(frame.data, { serial: this.#serial, sequence: this.#pageSeq++, granule: BigInt(this.#fed) }));
		}
	}

	#onOutput(chunk: Buffer): void {
		let buf = this.#adts.length ? Buffer.concat([this.#adts, chunk]) : chunk;
		let off = 0;
		while (buf.length - off >= 7) {
			if (buf[off] !== 0xff || ((buf[off + 1] ?? 0) & 0xf6) !== 0xf0) {
				off++; // resynchronise on the next syncword
				continue;
			}
			const b1 = buf[off + 1] ?? 0;
			const b3 = buf[off + 3] ?? 0;
			const b4 = buf[off + 4] ?? 0;
			const b5 = buf[off + 5] ?? 0;
			const b6 = buf[off + 6] ?? 0;
			const length = ((b3 & 0x03) << 11) | (b4 << 3) | (b5 >> 5);
			const headerLength = b1 & 0x01 ? 7 : 9;
			if (length < headerLength) {
				off++;
				continue;
			}
			if (buf.length - off < length) break;
			const blocks = (b6 & 0x03) + 1;
			const payload = Buffer.from(buf.subarray(off + headerLength, off + length));
			off += length;
			if (blocks === 1) {
				this.#emitFrame(payload);
			} else {
				// Not one access unit, so not one MP4 sample (ffmpeg never writes these); keep the clock.
				this.#outFrames += blocks;
				this.#stats.invalid++;
			}
		}
		buf = buf.subarray(off);
		this.#adts = Buffer.from(buf);
	}

	#emitFrame(data: Buffer): void {
		const k = this.#outFrames++;
		const pos = k * AAC_FRAME - AAC_ENCODER_DELAY;
		while (this.#anchors.length > 1 && (this.#anchors[1] as Anchor).pos <= pos) this.#anchors.shift();
		const anchor = this.#anchors[0];
		if (!anchor || data.length === 0) return;
		this.#stats.framesOut++;
		this.emit('frame', { kind: 'audio', pts: anchor.ms + ((pos - anchor.pos) * 1000) / RATE, data, receivedAt: performance.now() });
	}

	/** Kills ffmpeg and waits for it; idempotent. */
	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		this.#queue.clear();
		this.#stdin = null;
		this.#writable = false;
		await this.#proc.close();
		this.#logger.debug({ stats: this.stats }, 'opus to aac transcoder closed');
		this.emit('close');
		this.removeAllListeners();
	}
}
