import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FLV_TAG, FlvDemuxer } from '../../../ingest/rtmp/flv.js';
import type { AacConfig } from '../../../server/core/codecs/audio.js';
import type { AudioFrame, VideoConfig, VideoFrame } from '../../../server/core/media.js';
import { runFfmpeg, testSourceArgs } from '../../helpers/ffmpeg.js';
import type { TestSourceOptions } from '../../helpers/ffmpeg.js';

export interface EncodedClip {
	video: VideoConfig;
	audio: AacConfig | null;
	videoFrames: VideoFrame[];
	audioFrames: AudioFrame[];
}

/** Encodes a short synthetic clip as fast as ffmpeg can and demuxes it into core frames. */
export async function encodeClip(opts: TestSourceOptions & { duration: number }): Promise<EncodedClip> {
	const ff = runFfmpeg([...testSourceArgs({ ...opts, realtime: false }), '-f', 'flv', '-flvflags', 'no_duration_filesize', 'pipe:1'], {
		stdout: 'pipe',
	});
	const chunks: Buffer[] = [];
	ff.child.stdout?.on('data', (c: Buffer) => chunks.push(c));
	const code = await ff.exited;
	if (code !== 0) throw new Error(`ffmpeg failed: ${ff.stderr()}`);
	let buf = Buffer.concat(chunks).subarray(13);
	const demux = new FlvDemuxer();
	const clip: Partial<EncodedClip> & { videoFrames: VideoFrame[]; audioFrames: AudioFrame[] } = { videoFrames: [], audioFrames: [], audio: null };
	while (buf.length >= 11) {
		const size = buf.readUIntBE(1, 3);
		const type = buf[0];
		const ts = buf.readUIntBE(4, 3) | ((buf[7] ?? 0) << 24);
		const body = buf.subarray(11, 11 + size);
		buf = buf.subarray(11 + size + 4);
		const ev = type === FLV_TAG.VIDEO ? demux.video(ts, body, 0) : type === FLV_TAG.AUDIO ? demux.audio(ts, body, 0) : null;
		if (!ev) continue;
		if (ev.type === 'videoConfig') clip.video = ev.config;
		else if (ev.type === 'audioConfig') clip.audio = ev.config;
		else if (ev.type === 'video') clip.videoFrames.push(ev.frame);
		else if (ev.type === 'audio') clip.audioFrames.push(ev.frame);
	}
	if (!clip.video) throw new Error('no video configuration in the clip');
	return clip as EncodedClip;
}

/** Merges frames of both kinds in the order a publisher would send them (by time). */
export function interleave(clip: EncodedClip): (VideoFrame | AudioFrame)[] {
	const all: (VideoFrame | AudioFrame)[] = [...clip.videoFrames, ...(clip.audio ? clip.audioFrames : [])];
	const t = (f: VideoFrame | AudioFrame): number => (f.kind === 'video' ? f.dts : f.pts);
	return all.sort((a, b) => t(a) - t(b));
}

let tmpRoot: string | null = null;

/** A scratch file path that afterAll(cleanupTmp) removes. */
export function tmpFile(name: string): string {
	tmpRoot ??= fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-hls-test-'));
	return path.join(tmpRoot, name);
}

export function cleanupTmp(): void {
	if (tmpRoot) fs.rmSync(tmpRoot, { recursive: true, force: true });
	tmpRoot = null;
}

export interface ProbedPacket {
	codec_type: string;
	pts_time: string;
	dts_time: string;
	size: string;
	flags: string;
}

/** ffprobe's packet list of a file: it must demux every packet without an error. */
export async function probePackets(file: string): Promise<ProbedPacket[]> {
	const child = spawn('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_packets', '-show_entries', 'packet=codec_type,pts_time,dts_time,size,flags', file], {
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	let out = '';
	let err = '';
	child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
	child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
	const code = await new Promise<number | null>((r) => child.once('exit', r));
	if (code !== 0 || err.trim() !== '') throw new Error(`ffprobe ${file}: ${err}`);
	return (JSON.parse(out) as { packets?: ProbedPacket[] }).packets ?? [];
}

/** Decodes every frame of a file with ffmpeg; throws with ffmpeg's complaint if any frame fails. */
export async function decodeAll(file: string): Promise<{ video: number; audio: number }> {
	const child = spawn('ffprobe', ['-v', 'error', '-count_frames', '-print_format', 'json', '-show_entries', 'stream=codec_type,nb_read_frames', file], {
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	let out = '';
	let err = '';
	child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
	child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
	const code = await new Promise<number | null>((r) => child.once('exit', r));
	if (code !== 0 || err.trim() !== '') throw new Error(`decoding ${file}: ${err}`);
	const streams = (JSON.parse(out) as { streams: { codec_type: string; nb_read_frames: string }[] }).streams;
	return {
		video: Number(streams.find((s) => s.codec_type === 'video')?.nb_read_frames ?? 0),
		audio: Number(streams.find((s) => s.codec_type === 'audio')?.nb_read_frames ?? 0),
	};
}
