import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { ChildSet, stopChild } from './children.js';

/** Every ffmpeg a test started, so afterEach/afterAll can make sure none is left. */
const children = new ChildSet();

export interface TestSourceOptions {
	width?: number;
	height?: number;
	fps?: number;
	/** Keyframe interval in frames; default one second. */
	gop?: number;
	/** x264 profile: baseline (default), main, high. */
	profile?: 'baseline' | 'main' | 'high';
	/** Allow B-frames (only with main/high). */
	bframes?: number;
	audio?: boolean;
	audioRate?: number;
	audioChannels?: number;
	/** Seconds of media; default: until killed. */
	duration?: number;
	/** Real-time pacing (-re); default true. */
	realtime?: boolean;
	videoBitrateKbps?: number;
	/** x264 preset; ultrafast by default, superfast for High (ultrafast drops every High tool, so x264 signals Main). */
	preset?: string;
}

/**
 * ffmpeg input and codec arguments for a synthetic H.264 + AAC source: the
 * testsrc2 pattern and a sine tone, encoded the way a desktop encoder would.
 */
export function testSourceArgs(o: TestSourceOptions = {}): string[] {
	const w = o.width ?? 640;
	const h = o.height ?? 360;
	const fps = o.fps ?? 25;
	const gop = o.gop ?? fps;
	const profile = o.profile ?? 'baseline';
	const bframes = profile === 'baseline' ? 0 : (o.bframes ?? 0);
	const args: string[] = ['-hide_banner', '-loglevel', 'error', '-nostdin'];
	if (o.realtime ?? true) args.push('-re');
	const dur = o.duration !== undefined ? `:duration=${o.duration}` : '';
	args.push('-f', 'lavfi', '-i', `testsrc2=size=${w}x${h}:rate=${fps}${dur}`);
	if (o.audio ?? true) {
		args.push('-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=${o.audioRate ?? 48000}${dur}`);
	}
	args.push(
		'-c:v', 'libx264', '-preset', o.preset ?? (profile === 'high' ? 'superfast' : 'ultrafast'), '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
		'-profile:v', profile, '-g', String(gop), '-keyint_min', String(gop), '-sc_threshold', '0',
		'-bf', String(bframes), '-b:v', `${o.videoBitrateKbps ?? 800}k`,
	);
	if (bframes > 0) {
		// zerolatency turns B-frames off; put them back the way OBS's default does.
		args.push('-x264-params', `bframes=${bframes}:b-adapt=0:rc-lookahead=0:sync-lookahead=0`);
	}
	if (o.audio ?? true) {
		args.push('-c:a', 'aac', '-b:a', '96k', '-ac', String(o.audioChannels ?? 2), '-ar', String(o.audioRate ?? 48000));
	}
	return args;
}

export interface RunningFfmpeg {
	child: ChildProcess;
	/** stderr so far, to explain a failure. */
	stderr(): string;
	/** Resolves with the exit code (or null if killed by a signal). */
	exited: Promise<number | null>;
	/** SIGTERM, then SIGKILL after 2 s; resolves when it has exited. */
	stop(): Promise<void>;
}

export function runFfmpeg(args: string[], opts: { stdout?: 'pipe' | 'ignore'; stdin?: 'pipe' | 'ignore' } = {}): RunningFfmpeg {
	const child = spawn('ffmpeg', args, { stdio: [opts.stdin ?? 'ignore', opts.stdout ?? 'ignore', 'pipe'] });
	children.add(child);
	let err = '';
	child.stderr?.setEncoding('utf8');
	child.stderr?.on('data', (d: string) => {
		err += d;
		if (err.length > 20000) err = err.slice(-20000);
	});
	const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
	const stop = (): Promise<void> => stopChild(child, 'SIGTERM', exited);
	return { child, stderr: () => err, exited, stop };
}

/** Kills every ffmpeg started through runFfmpeg that is still running. */
export async function stopAllFfmpeg(): Promise<void> {
	await children.killAll();
}

/** ffprobe JSON for a file or URL. */
export async function ffprobe(target: string, extra: string[] = []): Promise<{
	streams: { codec_type: string; codec_name: string; width?: number; height?: number; sample_rate?: string; channels?: number; profile?: string }[];
	format?: { duration?: string };
}> {
	const child = spawn('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_streams', '-show_format', ...extra, target], {
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	let out = '';
	let err = '';
	child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
	child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
	const code = await new Promise<number | null>((r) => child.once('exit', r));
	if (code !== 0) throw new Error(`ffprobe ${target} failed: ${err}`);
	return JSON.parse(out) as Awaited<ReturnType<typeof ffprobe>>;
}

/** Runs ffmpeg once on `input` (stdin) and resolves with what it wrote to stdout. */
export function ffmpegFilter(args: string[], input: Buffer): Promise<Buffer> {
	return new Promise((resolve, reject) => {
		const child = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
		const out: Buffer[] = [];
		let err = '';
		child.stdout.on('data', (d: Buffer) => out.push(d));
		child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
		child.once('exit', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`ffmpeg failed: ${err}`))));
		child.stdin.end(input);
	});
}
