import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { splitAnnexB } from '../../server/core/codecs/h264.js';
import { buildRtp, buildSenderReport } from '../../ingest/rtp/rtp.js';
import type { RtpAnswer, RtpSessionSummary } from '../../ingest/rtp/session.js';
import type { StreamInfo } from '../../server/core/stream.js';
import type { Server } from '../../server/server.js';
import { baseUrl } from '../helpers/server.js';
import { ChildSet, stopChild } from '../helpers/children.js';

/** Real x264 output, one array of NAL units per access unit (AUD-delimited by x264). */
export async function encodeH264(o: { frames: number; width?: number; height?: number; gop?: number; profile?: string } = { frames: 50 }): Promise<Buffer[][]> {
	const args = [
		'-hide_banner', '-loglevel', 'error', '-nostdin',
		'-f', 'lavfi', '-i', `testsrc2=size=${o.width ?? 320}x${o.height ?? 180}:rate=25`,
		'-frames:v', String(o.frames),
		'-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
		'-profile:v', o.profile ?? 'baseline', '-g', String(o.gop ?? 25), '-bf', '0',
		'-x264-params', 'aud=1', '-f', 'h264', 'pipe:1',
	];
	const child = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
	const chunks: Buffer[] = [];
	let err = '';
	child.stdout.on('data', (d: Buffer) => chunks.push(d));
	child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
	const code = await new Promise<number | null>((r) => child.once('exit', r));
	if (code !== 0) throw new Error(`ffmpeg failed: ${err}`);
	const aus: Buffer[][] = [];
	for (const nal of splitAnnexB(Buffer.concat(chunks))) {
		if (((nal[0] ?? 0) & 0x1f) === 9 || aus.length === 0) aus.push([]);
		aus.at(-1)!.push(Buffer.from(nal));
	}
	return aus;
}

/**
 * A test-side RFC 6184 packetizer: single NAL units, FU-A above `mtu`, and
 * optionally STAP-A for runs of small NAL units.
 */
export function packetizeH264(au: Buffer[], o: { mtu?: number; stapA?: boolean } = {}): Buffer[] {
	const mtu = o.mtu ?? 1200;
	const out: Buffer[] = [];
	let stap: Buffer[] = [];
	const flushStap = (): void => {
		if (stap.length === 0) return;
		if (stap.length === 1) out.push(stap[0]!);
		else {
			const parts: Buffer[] = [Buffer.from([(stap[0]![0]! & 0x60) | 24])];
			for (const n of stap) {
				const len = Buffer.alloc(2);
				len.writeUInt16BE(n.length);
				parts.push(len, n);
			}
			out.push(Buffer.concat(parts));
		}
		stap = [];
	};
	for (const nal of au) {
		if (nal.length <= mtu) {
			if (o.stapA && nal.length < 200) {
				stap.push(nal);
				continue;
			}
			flushStap();
			out.push(nal);
			continue;
		}
		flushStap();
		const hdr = nal[0]!;
		const indicator = (hdr & 0xe0) | 28;
		const body = nal.subarray(1);
		const size = mtu - 2;
		for (let off = 0; off < body.length; off += size) {
			const start = off === 0;
			const end = off + size >= body.length;
			const fuHeader = (start ? 0x80 : 0) | (end ? 0x40 : 0) | (hdr & 0x1f);
			out.push(Buffer.concat([Buffer.from([indicator, fuHeader]), body.subarray(off, off + size)]));
		}
	}
	flushStap();
	return out;
}

/** A UDP socket that plays an RTP sender: its own SSRC, sequence and timestamp offset. */
export class TestRtpSender {
	readonly socket = dgram.createSocket('udp4');
	seq = Math.floor(Math.random() * 65536);
	readonly ssrc: number;
	readonly tsOffset = Math.floor(Math.random() * 0xffffffff);
	readonly received: Buffer[] = [];
	#port = 0;

	constructor(readonly payloadType: number, readonly clockRate: number, ssrc?: number) {
		this.ssrc = ssrc ?? Math.floor(Math.random() * 0x7fffffff) + 1;
		this.socket.on('message', (m) => this.received.push(m));
	}

	async open(port: number): Promise<this> {
		this.#port = port;
		await new Promise<void>((r) => this.socket.bind(0, '127.0.0.1', () => r()));
		return this;
	}

	get localPort(): number {
		return this.socket.address().port;
	}

	/** RTP timestamp of media time `ms` on this sender's clock. */
	rtpTs(ms: number): number {
		return (this.tsOffset + Math.round((ms * this.clockRate) / 1000)) >>> 0;
	}

	raw(buf: Buffer, port = this.#port): Promise<void> {
		return new Promise((resolve) => this.socket.send(buf, port, '127.0.0.1', () => resolve()));
	}

	packet(payload: Buffer, ms: number, marker: boolean, seq = this.seq++): Buffer {
		return buildRtp({ payloadType: this.payloadType, marker, sequenceNumber: seq & 0xffff, timestamp: this.rtpTs(ms), ssrc: this.ssrc, payload });
	}

	send(payload: Buffer, ms: number, marker: boolean): Promise<void> {
		return this.raw(this.packet(payload, ms, marker));
	}

	/** Sends one access unit at media time `ms`. */
	async sendAu(au: Buffer[], ms: number, opts: { mtu?: number; stapA?: boolean } = {}): Promise<void> {
		const payloads = packetizeH264(au, opts);
		for (let i = 0; i < payloads.length; i++) await this.send(payloads[i]!, ms, i === payloads.length - 1);
	}

	/** A sender report saying media time `ms` was sampled at sender wall clock `wallMs`. */
	senderReport(ms: number, wallMs: number, port: number): Promise<void> {
		const ntpMs = wallMs + 2_208_988_800_000;
		const seconds = Math.floor(ntpMs / 1000);
		const fraction = Math.floor(((ntpMs % 1000) / 1000) * 0x1_0000_0000);
		return this.raw(
			buildSenderReport({ ssrc: this.ssrc, ntpSeconds: seconds, ntpFraction: fraction, rtpTimestamp: this.rtpTs(ms), packetCount: 0, octetCount: 0 }),
			port,
		);
	}

	close(): void {
		try {
			this.socket.close();
		} catch {
			// closed
		}
	}
}

export async function postRtp(
	server: Server,
	name: string,
	opts: { key?: string; bearer?: string; body?: unknown; rawBody?: string; contentType?: string } = {},
): Promise<{ status: number; body: RtpAnswer & { error?: { code: string; message: string } } }> {
	const q = opts.key !== undefined ? `?key=${encodeURIComponent(opts.key)}` : '';
	const headers: Record<string, string> = {};
	if (opts.bearer !== undefined) headers.authorization = `Bearer ${opts.bearer}`;
	let body: string | undefined;
	if (opts.body !== undefined) {
		body = JSON.stringify(opts.body);
		headers['content-type'] = 'application/json';
	}
	if (opts.rawBody !== undefined) {
		body = opts.rawBody;
		headers['content-type'] = opts.contentType ?? 'text/plain';
	}
	const res = await fetch(`${baseUrl(server)}/api/streams/${name}/rtp${q}`, { method: 'POST', headers, body });
	return { status: res.status, body: (await res.json()) as RtpAnswer & { error?: { code: string; message: string } } };
}

export async function deleteRtp(server: Server, name: string, opts: { key?: string; bearer?: string } = {}): Promise<{ status: number; body: unknown }> {
	const q = opts.key !== undefined ? `?key=${encodeURIComponent(opts.key)}` : '';
	const headers: Record<string, string> = {};
	if (opts.bearer !== undefined) headers.authorization = `Bearer ${opts.bearer}`;
	const res = await fetch(`${baseUrl(server)}/api/streams/${name}/rtp${q}`, { method: 'DELETE', headers });
	const text = await res.text();
	return { status: res.status, body: text ? (JSON.parse(text) as unknown) : null };
}

/**
 * ffmpeg arguments that send the lavfi test pattern and tone as H.264 and
 * Opus RTP to an answer's ports (the inputs of test/helpers/ffmpeg.ts
 * testSourceArgs; RTCP goes to port + 1, ffmpeg's default).
 */
export function ffmpegRtpArgs(answer: RtpAnswer, o: { width?: number; height?: number; fps?: number; ssrc?: boolean; host?: string } = {}): string[] {
	const w = o.width ?? 640;
	const h = o.height ?? 360;
	const fps = o.fps ?? 25;
	const host = o.host ?? '127.0.0.1';
	const ssrc = (n: number): string[] => (o.ssrc === false ? [] : ['-ssrc', String(n)]);
	return [
		'-hide_banner', '-loglevel', 'error', '-nostdin', '-re',
		'-f', 'lavfi', '-i', `testsrc2=size=${w}x${h}:rate=${fps}`,
		'-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
		'-map', '0:v', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
		'-profile:v', 'baseline', '-g', String(fps), '-keyint_min', String(fps), '-sc_threshold', '0', '-bf', '0', '-b:v', '800k',
		'-f', 'rtp', '-payload_type', String(answer.video.payloadType), ...ssrc(answer.video.ssrc),
		`rtp://${host}:${answer.video.port}?pkt_size=1200`,
		'-map', '1:a', '-c:a', 'libopus', '-b:a', '64k', '-ac', '2', '-ar', '48000', '-application', 'lowdelay', '-frame_duration', '20',
		'-f', 'rtp', '-payload_type', String(answer.audio.payloadType), ...ssrc(answer.audio.ssrc),
		`rtp://${host}:${answer.audio.port}?pkt_size=1200`,
	];
}

const gstChildren = new ChildSet();

/** Runs a gst-launch-1.0 pipeline (given as one string); stop() ends it, stopAllGst() ends them all. */
export function runGst(pipeline: string): { stop: () => Promise<void>; output: () => string } {
	const child = gstChildren.add(spawn('gst-launch-1.0', ['-q', ...pipeline.split(/\s+/).filter(Boolean)], { stdio: ['ignore', 'pipe', 'pipe'] }));
	let out = '';
	const keep = (d: Buffer): void => {
		out = (out + d.toString('utf8')).slice(-20_000);
	};
	child.stdout.on('data', keep);
	child.stderr.on('data', keep);
	const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
	const stop = (): Promise<void> => stopChild(child, 'SIGINT', exited);
	return { stop, output: () => out };
}

export function stopAllGst(): Promise<void> {
	return gstChildren.killAll();
}

/** GET /api/streams/NAME, typed with the `rtp` annotation of RTP streams. */
export async function streamInfo(server: Server, name: string): Promise<StreamInfo & { rtp?: RtpSessionSummary }> {
	const res = await fetch(`${baseUrl(server)}/api/streams/${name}`);
	if (res.status !== 200) throw new Error(`GET /api/streams/${name}: ${res.status}`);
	return (await res.json()) as StreamInfo & { rtp?: RtpSessionSummary };
}
