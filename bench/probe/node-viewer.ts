import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { H264Depacketizer, NodeViewer } from '../../client/node/index.js';
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
	readonly #viewer: NodeViewer;
	readonly #decoder: ChildProcess;
	readonly #exited: Promise<void>;

	private constructor(viewer: NodeViewer, decoder: ChildProcess, joinedAt: number, opts: NodeProbeOptions) {
		this.#viewer = viewer;
		this.#decoder = decoder;
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
		const depack = new H264Depacketizer();
		viewer.on('rtp', (p) => {
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
		const joinedAt = wallNow();
		let viewer: NodeViewer;
		try {
			viewer = await NodeViewer.create({ server: opts.server, stream: opts.stream, iceAddress: '127.0.0.1' });
		} catch (err) {
			decoder.kill('SIGKILL');
			throw err;
		}
		return new NodeProbeViewer(viewer, decoder, joinedAt, opts);
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
		this.#decoder.stdin?.end();
		const t = setTimeout(() => this.#decoder.kill('SIGKILL'), 2000);
		await this.#exited;
		clearTimeout(t);
	}
}
