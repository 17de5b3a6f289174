import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { FLV_TAG, FlvDemuxer } from '../../../ingest/rtmp/flv.js';
import type { AudioFrame } from '../../../server/core/media.js';
import type { Publication, StreamRegistry } from '../../../server/core/stream.js';
import { opusPacketSamples } from '../../../server/hls/ogg.js';
import { ChildSet, killAndWait } from '../../helpers/children.js';

/**
 * Reads an Ogg Opus byte stream (as ffmpeg writes it) into Opus packets with
 * their times: the way plain RTP ingest hands Opus to the stream core, one
 * AudioFrame per packet at 48 kHz.
 */
export class OggOpusReader {
	#buf: Buffer = Buffer.alloc(0);
	#partial: Buffer[] = [];
	#packetIndex = 0;
	#preSkip = 0;
	#samples = 0;
	channels = 0;

	constructor(private readonly onPacket: (frame: AudioFrame) => void) {}

	push(chunk: Buffer): void {
		this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
		for (;;) {
			const b = this.#buf;
			if (b.length < 27) return;
			if (b.toString('latin1', 0, 4) !== 'OggS') throw new Error('lost Ogg sync');
			const nsegs = b[26] ?? 0;
			if (b.length < 27 + nsegs) return;
			const lacing = b.subarray(27, 27 + nsegs);
			let bodyLen = 0;
			for (const l of lacing) bodyLen += l;
			if (b.length < 27 + nsegs + bodyLen) return;
			let off = 27 + nsegs;
			for (const l of lacing) {
				this.#partial.push(b.subarray(off, off + l));
				off += l;
				if (l < 255) {
					this.#packet(Buffer.concat(this.#partial));
					this.#partial = [];
				}
			}
			this.#buf = b.subarray(off);
		}
	}

	#packet(p: Buffer): void {
		const i = this.#packetIndex++;
		if (i === 0) {
			this.channels = p[9] ?? 0;
			this.#preSkip = p.readUInt16LE(10);
			return;
		}
		if (i === 1) return; // OpusTags
		const pts = ((this.#samples - this.#preSkip) * 1000) / 48_000;
		this.#samples += opusPacketSamples(p);
		this.onPacket({ kind: 'audio', pts, data: Buffer.from(p), receivedAt: performance.now() });
	}
}

const children = new ChildSet();

export interface OpusPublisher {
	publication: Publication;
	child: ChildProcess;
	stop(): Promise<void>;
}

/**
 * Publishes H.264 video (FLV on stdout) and Opus audio (Ogg on fd 3) from one
 * ffmpeg, both on the encoder's clock: what an RTP publisher gives the core.
 */
export function publishOpusFromFfmpeg(
	registry: StreamRegistry,
	stream: string,
	opts: { duration?: number; channels?: number; video?: boolean } = {},
): OpusPublisher {
	const dur = opts.duration !== undefined ? `:duration=${opts.duration}` : '';
	const video = opts.video ?? true;
	const args = ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re'];
	if (video) args.push('-f', 'lavfi', '-i', `testsrc2=size=640x360:rate=25${dur}`);
	args.push('-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000${dur}`);
	const audioInput = video ? 1 : 0;
	if (video) {
		args.push(
			'-map', '0:v', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
			'-profile:v', 'baseline', '-g', '25', '-keyint_min', '25', '-sc_threshold', '0', '-b:v', '600k',
			'-f', 'flv', '-flvflags', 'no_duration_filesize', 'pipe:1',
		);
	}
	args.push(
		'-map', `${audioInput}:a`, '-c:a', 'libopus', '-b:a', '64k', '-ac', String(opts.channels ?? 2),
		'-frame_duration', '20', '-page_duration', '20000', '-f', 'ogg', 'pipe:3',
	);
	const child = children.add(spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] }));
	const publication = registry.publish(stream, { protocol: 'rtp', remoteAddress: '127.0.0.1', kick: () => child.kill('SIGKILL') });
	let configured = false;
	const reader = new OggOpusReader((frame) => {
		if (publication.ended) return;
		if (!configured) {
			publication.setAudioConfig({ codec: 'opus', sampleRate: 48000, channels: reader.channels });
			configured = true;
		}
		publication.pushAudio(frame);
	});
	(child.stdio[3] as Readable).on('data', (chunk: Buffer) => reader.push(chunk));
	if (video) {
		const demux = new FlvDemuxer();
		let buf: Buffer = Buffer.alloc(0);
		let headerDone = false;
		child.stdout?.on('data', (chunk: Buffer) => {
			buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
			const now = performance.now();
			if (!headerDone) {
				if (buf.length < 13) return;
				buf = buf.subarray(13);
				headerDone = true;
			}
			while (buf.length >= 11) {
				const size = buf.readUIntBE(1, 3);
				if (buf.length < 11 + size + 4) break;
				const type = buf[0];
				const ts = buf.readUIntBE(4, 3) | ((buf[7] ?? 0) << 24);
				const body = buf.subarray(11, 11 + size);
				buf = buf.subarray(11 + size + 4);
				if (publication.ended || type !== FLV_TAG.VIDEO) continue;
				const ev = demux.video(ts, body, now);
				if (ev.type === 'videoConfig') publication.setVideoConfig(ev.config);
				else if (ev.type === 'video') publication.pushVideo(ev.frame);
			}
		});
	}
	child.once('exit', () => publication.end('ffmpeg exited'));
	return {
		publication,
		child,
		stop: async () => {
			await killAndWait(child);
			publication.end('stopped');
		},
	};
}

export function stopOpusPublishers(): Promise<void> {
	return children.killAll();
}
