import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Background, drawTimecode } from './timecode.js';

export interface RtpDestination {
	ip: string;
	port: number;
	payloadType: number;
	ssrc: number;
}

/**
 * Where the probe publishes. Plain RTP may go to several receivers at once:
 * the same encoded packets, so servers compared side by side get the same feed.
 */
export type ProbeTarget =
	| { kind: 'rtmp'; url: string }
	| { kind: 'rtp'; outputs: { video: RtpDestination; audio?: RtpDestination }[] };

export interface ProbePublisherOptions {
	target: ProbeTarget;
	width?: number;
	height?: number;
	fps?: number;
	/** Keyframe interval in seconds. */
	gopSeconds?: number;
	bitrateKbps?: number;
	preset?: string;
	/** Add a sine tone as AAC (RTMP) or Opus (RTP), as a real feed has. */
	audio?: boolean;
	ffmpegPath?: string;
}

export const PROBE_DEFAULTS = { width: 1280, height: 720, fps: 30, gopSeconds: 1, bitrateKbps: 2500, preset: 'veryfast' };

/** ffmpeg arguments that encode raw frames from stdin the way the probe publishes. */
export function probeEncoderArgs(o: Required<Omit<ProbePublisherOptions, 'target' | 'ffmpegPath'>>): string[] {
	const gop = Math.max(1, Math.round(o.gopSeconds * o.fps));
	return [
		'-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${o.width}x${o.height}`, '-r', String(o.fps), '-i', 'pipe:0',
		'-c:v', 'libx264', '-preset', o.preset, '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p',
		'-g', String(gop), '-keyint_min', String(gop), '-sc_threshold', '0', '-bf', '0',
		'-b:v', `${o.bitrateKbps}k`, '-maxrate', `${o.bitrateKbps}k`, '-bufsize', `${Math.round(o.bitrateKbps / 2)}k`,
	];
}

/**
 * The probe's publisher: renders frames whose pixels carry the wall-clock time
 * of capture, paces them in real time, and has ffmpeg/libx264 encode and
 * publish them. The capture time is taken as the frame is handed to the encoder.
 */
export class ProbePublisher {
	readonly options: Required<Omit<ProbePublisherOptions, 'target'>> & { target: ProbeTarget };
	readonly #child: ChildProcess;
	#frames = 0;
	#skipped = 0;
	/** Sequence numbers handed to the encoder (frames the probe did not skip), in order. */
	readonly sentSeqs: number[] = [];
	#timer: NodeJS.Timeout | null = null;
	#closed = false;
	#stderr = '';
	readonly #exited: Promise<number | null>;

	private constructor(opts: ProbePublisherOptions) {
		this.options = { ...PROBE_DEFAULTS, audio: true, ffmpegPath: 'ffmpeg', ...opts };
		const o = this.options;
		const args = ['-hide_banner', '-loglevel', 'error'];
		if (o.audio) args.push('-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000');
		args.push(...probeEncoderArgs(o));
		// With audio, the raw video becomes input 1 (the tone is input 0).
		const v = o.audio ? '1:v' : '0:v';
		const t = o.target;
		if (t.kind === 'rtmp') {
			args.push('-map', v);
			if (o.audio) args.push('-map', '0:a', '-c:a', 'aac', '-b:a', '96k', '-ar', '48000', '-ac', '2');
			args.push('-flvflags', 'no_duration_filesize', '-f', 'flv', t.url);
		} else {
			// One encode, fanned out by the tee muxer: one RTP muxer per stream and receiver.
			const slaves: string[] = [];
			const slave = (sel: 'v' | 'a', d: RtpDestination, query: string): string =>
				`[select=${sel}:f=rtp:payload_type=${d.payloadType}:ssrc=${d.ssrc}]rtp://${d.ip}:${d.port}${query}`;
			for (const out of t.outputs) {
				slaves.push(slave('v', out.video, '?pkt_size=1200'));
				if (o.audio && out.audio) slaves.push(slave('a', out.audio, ''));
			}
			args.push('-map', v);
			if (o.audio) args.push('-map', '0:a', '-c:a', 'libopus', '-b:a', '96k', '-application', 'lowdelay', '-frame_duration', '20');
			args.push('-f', 'tee', slaves.join('|'));
		}
		this.#child = spawn(o.ffmpegPath, args, { stdio: ['pipe', 'ignore', 'pipe'] });
		this.#child.stdin?.on('error', () => undefined);
		this.#child.stderr?.setEncoding('utf8').on('data', (d: string) => {
			this.#stderr = (this.#stderr + d).slice(-4000);
		});
		this.#exited = new Promise((r) => this.#child.once('exit', (code) => r(code)));
	}

	static create(opts: ProbePublisherOptions): ProbePublisher {
		const p = new ProbePublisher(opts);
		p.#run();
		return p;
	}

	/** Frames handed to the encoder, and frames skipped because we fell behind. */
	get stats(): { frames: number; skipped: number } {
		return { frames: this.#frames, skipped: this.#skipped };
	}

	get stderr(): string {
		return this.#stderr;
	}

	get exited(): Promise<number | null> {
		return this.#exited;
	}

	#run(): void {
		const { width, height, fps } = this.options;
		const ySize = width * height;
		const frame = Buffer.alloc(ySize * 3 / 2, 128);
		const luma = frame.subarray(0, ySize);
		const bg = new Background(width, height);
		const interval = 1000 / fps;
		const start = performance.now();
		let n = 0;
		const tick = (): void => {
			if (this.#closed) return;
			const now = performance.now();
			// Frames we are too late for are skipped, not sent in a burst.
			const due = Math.floor((now - start) / interval);
			if (due > n) {
				this.#skipped += due - n;
				n = due;
			}
			bg.fill(luma, n);
			drawTimecode(luma, width, height, { timeMs: performance.timeOrigin + performance.now(), seq: n });
			const stdin = this.#child.stdin;
			if (stdin && !stdin.destroyed && stdin.writableLength < frame.length * 2) {
				// A copy: the next frame is painted while this one is still queued.
				stdin.write(Buffer.from(frame));
				this.#frames++;
				if (this.sentSeqs.length < 1_000_000) this.sentSeqs.push(n);
			} else {
				this.#skipped++;
			}
			n++;
			this.#timer = setTimeout(tick, Math.max(0, start + n * interval - performance.now()));
		};
		tick();
	}

	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		if (this.#timer) clearTimeout(this.#timer);
		this.#child.stdin?.end();
		const kill = setTimeout(() => this.#child.kill('SIGKILL'), 2000);
		this.#child.kill('SIGTERM');
		await this.#exited;
		clearTimeout(kill);
	}
}
