import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { H264Depacketizer, NodeViewer } from '../../client/node/index.js';
import { opusPacketSamples } from '../../ingest/bridge/index.js';
import { oggPage, opusHead, opusTags } from '../../server/hls/ogg.js';
import { MarkDetector, markCaptureTime } from './audio-marks.js';
import type { AudioSample } from './audio-marks.js';
import { readTimecodeFromLuma } from './timecode.js';
import type { FrameSample, ProbeResults } from './types.js';

export interface NodeProbeOptions {
	server: string;
	stream: string;
	/** Picture size the probe publishes (the decoder outputs it unscaled). */
	width: number;
	height: number;
	ffmpegPath?: string;
}

const wallNow = (): number => performance.timeOrigin + performance.now();

/**
 * The werift Node viewer with a decoder behind it: RTP -> Annex B -> ffmpeg ->
 * gray pictures -> timecode. The same measure as the browser's, with ffmpeg's
 * H.264 decoder (single-threaded, low-delay) standing in for the browser's.
 */
export class NodeProbeViewer {
	readonly results: ProbeResults;
	readonly joinedAt: number;
	/**
	 * Tone bursts in the received audio, each timed at the arrival of the
	 * packet that carries its onset (this viewer plays nothing out: it
	 * measures what reaches it). The Opus is decoded by an ffmpeg child only
	 * to find the bursts; its own delay is not counted.
	 */
	readonly audio: AudioSample[] = [];
	readonly #viewer: NodeViewer;
	readonly #decoder: ChildProcess;
	readonly #audioDecoder: ChildProcess;
	readonly #exited: Promise<void>;

	private constructor(viewer: NodeViewer, decoder: ChildProcess, audioDecoder: ChildProcess, joinedAt: number, opts: NodeProbeOptions) {
		this.#viewer = viewer;
		this.#decoder = decoder;
		this.#audioDecoder = audioDecoder;
		this.joinedAt = joinedAt;
		this.results = { samples: [], unreadable: 0, firstFrameAt: null, width: opts.width, height: opts.height };
		this.#exited = new Promise((r) => decoder.once('exit', () => r()));
		const frameSize = opts.width * opts.height;
		let pending: Buffer[] = [];
		let pendingBytes = 0;
		decoder.stdout?.on('data', (chunk: Buffer) => {
			pending.push(chunk);
			pendingBytes += chunk.length;
			while (pendingBytes >= frameSize) {
				const all = Buffer.concat(pending);
				const frame = all.subarray(0, frameSize);
				const rest = all.subarray(frameSize);
				pending = rest.length ? [rest] : [];
				pendingBytes = rest.length;
				this.#onPicture(frame, opts);
			}
		});
		// Audio: every packet's place in the decoded sample stream and its arrival.
		const packets: { start: number; samples: number; arrivedAt: number }[] = [];
		let written = 0;
		let sequence = 0;
		const serial = 0x5ab5ec;
		const detector = new MarkDetector(48000);
		let decoded = 0;
		audioDecoder.stdout?.on('data', (chunk: Buffer) => {
			const mono = new Float32Array(Math.floor(chunk.length / 2));
			for (let i = 0; i < mono.length; i++) mono[i] = chunk.readInt16LE(i * 2) / 32768;
			for (const o of detector.push(mono)) {
				const p = packets.find((x) => o.sample >= x.start && o.sample < x.start + x.samples);
				if (!p) continue;
				const heard = p.arrivedAt + ((o.sample - p.start) * 1000) / 48000;
				const markMs = markCaptureTime(o.tone, heard);
				this.audio.push({ markMs, delayMs: heard - markMs });
			}
			decoded += mono.length;
			// Packets wholly decoded can go, but keep a second for onsets read late.
			while (packets.length > 100 && (packets[0]?.start ?? 0) + 48000 < decoded) packets.shift();
		});
		const depack = new H264Depacketizer();
		viewer.on('rtp', (p) => {
			if (p.kind === 'audio') {
				let n: number;
				try {
					n = opusPacketSamples(p.payload);
				} catch {
					return;
				}
				if (sequence === 0) {
					audioDecoder.stdin?.write(oggPage(opusHead(2), { serial, sequence: sequence++, granule: 0n, flags: 0x02 }));
					audioDecoder.stdin?.write(oggPage(opusTags(), { serial, sequence: sequence++, granule: 0n }));
				}
				packets.push({ start: written, samples: n, arrivedAt: performance.timeOrigin + p.receivedAt });
				written += n;
				audioDecoder.stdin?.write(oggPage(p.payload, { serial, sequence: sequence++, granule: BigInt(written) }));
				return;
			}
			if (p.kind !== 'video') return;
			const out = depack.push(p.payload, p.sequenceNumber, p.marker);
			for (const b of out) decoder.stdin?.write(b);
		});
	}

	static async create(opts: NodeProbeOptions): Promise<NodeProbeViewer> {
		const decoder = spawn(
			opts.ffmpegPath ?? 'ffmpeg',
			[
				'-hide_banner', '-loglevel', 'error', '-nostdin',
				'-flags', 'low_delay', '-probesize', '32', '-analyzeduration', '0', '-fpsprobesize', '0', '-threads', '1',
				'-f', 'h264', '-i', 'pipe:0',
				'-f', 'rawvideo', '-pix_fmt', 'gray', '-flush_packets', '1', 'pipe:1',
			],
			{ stdio: ['pipe', 'pipe', 'ignore'] },
		);
		decoder.stdin?.on('error', () => undefined);
		const audioDecoder = spawn(
			opts.ffmpegPath ?? 'ffmpeg',
			['-hide_banner', '-loglevel', 'error', '-nostdin', '-probesize', '32', '-analyzeduration', '0', '-f', 'ogg', '-i', 'pipe:0', '-f', 's16le', '-ac', '1', '-ar', '48000', '-flush_packets', '1', 'pipe:1'],
			{ stdio: ['pipe', 'pipe', 'ignore'] },
		);
		audioDecoder.stdin?.on('error', () => undefined);
		const joinedAt = wallNow();
		let viewer: NodeViewer;
		try {
			viewer = await NodeViewer.create({ server: opts.server, stream: opts.stream, iceAddress: '127.0.0.1' });
		} catch (err) {
			decoder.kill('SIGKILL');
			audioDecoder.kill('SIGKILL');
			throw err;
		}
		return new NodeProbeViewer(viewer, decoder, audioDecoder, joinedAt, opts);
	}

	#onPicture(luma: Buffer, opts: NodeProbeOptions): void {
		const code = readTimecodeFromLuma(luma, opts.width, opts.height);
		if (!code) {
			this.results.unreadable++;
			return;
		}
		const now = wallNow();
		this.results.firstFrameAt ??= now;
		const sample: FrameSample = { seq: code.seq, delayMs: now - code.timeMs, receiveDelayMs: null, presentedAt: now };
		this.results.samples.push(sample);
	}

	async close(): Promise<void> {
		await this.#viewer.close();
		this.#audioDecoder.stdin?.end();
		this.#audioDecoder.kill('SIGKILL');
		this.#decoder.stdin?.end();
		const t = setTimeout(() => this.#decoder.kill('SIGKILL'), 2000);
		await this.#exited;
		clearTimeout(t);
	}
}
