import { performance } from 'node:perf_hooks';
import { FLV_TAG, FlvDemuxer } from '../../ingest/rtmp/flv.js';
import type { Publication, StreamRegistry } from '../../server/core/stream.js';
import { runFfmpeg, testSourceArgs } from './ffmpeg.js';
import type { RunningFfmpeg, TestSourceOptions } from './ffmpeg.js';

/**
 * Publishes into a StreamRegistry straight from an ffmpeg FLV pipe, without
 * RTMP: for testing what sits after the stream core (bridge, HLS, signaling)
 * with real encoder output.
 */
export function publishFromFfmpeg(
	registry: StreamRegistry,
	stream: string,
	source: TestSourceOptions = {},
): { ffmpeg: RunningFfmpeg; publication: Publication; stop: () => Promise<void> } {
	const ffmpeg = runFfmpeg([...testSourceArgs(source), '-f', 'flv', '-flvflags', 'no_duration_filesize', 'pipe:1'], {
		stdout: 'pipe',
	});
	const publication = registry.publish(stream, {
		protocol: 'rtmp',
		remoteAddress: '127.0.0.1',
		kick: () => void ffmpeg.stop(),
	});
	const demux = new FlvDemuxer();
	let buf: Buffer = Buffer.alloc(0);
	let headerDone = false;
	ffmpeg.child.stdout?.on('data', (chunk: Buffer) => {
		buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
		const now = performance.now();
		if (!headerDone) {
			if (buf.length < 13) return;
			buf = buf.subarray(13); // FLV header + PreviousTagSize0
			headerDone = true;
		}
		while (buf.length >= 11) {
			const size = buf.readUIntBE(1, 3);
			if (buf.length < 11 + size + 4) break;
			const type = buf[0];
			const ts = buf.readUIntBE(4, 3) | ((buf[7] ?? 0) << 24);
			const body = buf.subarray(11, 11 + size);
			buf = buf.subarray(11 + size + 4);
			if (publication.ended) continue;
			const ev = type === FLV_TAG.VIDEO ? demux.video(ts, body, now) : type === FLV_TAG.AUDIO ? demux.audio(ts, body, now) : null;
			if (!ev) continue;
			if (ev.type === 'videoConfig') publication.setVideoConfig(ev.config);
			else if (ev.type === 'audioConfig') publication.setAudioConfig(ev.config);
			else if (ev.type === 'video') publication.pushVideo(ev.frame);
			else if (ev.type === 'audio') publication.pushAudio(ev.frame);
		}
	});
	void ffmpeg.exited.then(() => publication.end('ffmpeg exited'));
	return {
		ffmpeg,
		publication,
		stop: async () => {
			await ffmpeg.stop();
			publication.end('stopped');
		},
	};
}
