import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { FLV_TAG, FlvDemuxer } from '../../ingest/rtmp/flv.js';
import { FlvReader } from '../../ingest/bridge/flv.js';
import { waitFor } from '../../server/common/emitter.js';
import type { Publication } from '../../server/core/stream.js';
import type { Server } from '../../server/server.js';
import { runFfmpeg, stopAllFfmpeg, testSourceArgs } from '../helpers/ffmpeg.js';
import { eventually, startTestServer } from '../helpers/server.js';
import { RtpProbe, decodeErrors, decodeProbes } from './helpers.js';

/**
 * Publishes Main profile with B-frames, but with the SPS's reorder
 * information hidden (as encoders without VUI bitstream restrictions send
 * it), so B-frames only show when a frame arrives out of presentation order.
 */
function publishMainWithHiddenBFrames(server: Server, name: string): Publication {
	const ff = runFfmpeg([...testSourceArgs({ profile: 'main', bframes: 2, preset: 'superfast' }), '-f', 'flv', 'pipe:1'], { stdout: 'pipe' });
	const pub = server.registry.publish(name, { protocol: 'rtmp', remoteAddress: '127.0.0.1', kick: () => void ff.stop() });
	const demux = new FlvDemuxer();
	let now = 0;
	const reader = new FlvReader((tag) => {
		if (pub.ended) return;
		const ev = tag.type === FLV_TAG.VIDEO ? demux.video(tag.timestamp, tag.body, now) : tag.type === FLV_TAG.AUDIO ? demux.audio(tag.timestamp, tag.body, now) : null;
		if (!ev) return;
		if (ev.type === 'videoConfig') pub.setVideoConfig({ ...ev.config, maxReorderFrames: null });
		else if (ev.type === 'audioConfig') pub.setAudioConfig(ev.config);
		else if (ev.type === 'video') pub.pushVideo(ev.frame);
		else if (ev.type === 'audio') pub.pushAudio(ev.frame);
	});
	ff.child.stdout?.on('data', (chunk: Buffer) => {
		now = performance.now();
		reader.push(chunk);
	});
	void ff.exited.then(() => pub.end('ffmpeg exited'));
	return pub;
}

describe('bridge: B-frames noticed late', () => {
	let server: Server | null = null;
	afterEach(async () => {
		await stopAllFfmpeg();
		await server?.close();
		server = null;
	});

	it('switches a passthrough stream to the transcoder on the first reordered frame, keeping the producer', async () => {
		const s = (server = await startTestServer({ rtmp: { enabled: false } }));
		const paths: string[] = [];
		s.registry.on('publish', (_stream, p) => p.on('videoPath', (path) => paths.push(`${path.mode}: ${path.reason}`)));
		const firstReady = waitFor(s.routers, 'ready', 20_000, (name) => name === 'late');
		const pub = publishMainWithHiddenBFrames(s, 'late');
		const [, producers] = await firstReady;
		const videoProducer = producers.find((p) => p.kind === 'video')!;
		expect(videoProducer.rtpParameters.codecs[0]!.parameters['profile-level-id']).toMatch(/^4d00/);
		await eventually(() => s.bridge!.session('late')?.videoPath === 'transcode', 15_000);
		expect(paths[0]).toMatch(/^passthrough: Main, no B-frames seen so far/);
		expect(paths[1]).toMatch(/^transcode: B-frames \(frames arrive out of presentation order\)/);
		expect(pub.rendition).not.toBeNull();
		// Same producer: viewers keep their consumer, no new negotiation.
		expect(s.routers.producers('late').find((p) => p.kind === 'video')).toBe(videoProducer);

		// Let the transcoder settle (ffmpeg starts slowly on a loaded machine).
		const session = s.bridge!.session('late')!;
		await eventually(() => (session.stats().videoTranscoder?.framesOut ?? 0) > 50, 40_000, 100);
		const { router } = await s.routers.viewerRouter('late');
		const video = await RtpProbe.create(router, videoProducer);
		try {
			await eventually(() => video.idrTimes.length > 0 && video.packets > 60, 20_000);
			// From the transcoder on, presentation times only go forward.
			const ts = video.timestamps.slice(-40);
			for (let i = 1; i < ts.length; i++) expect(((ts[i]! - ts[i - 1]! + 2 ** 32) % 2 ** 32) < 2 ** 31).toBe(true);
			const result = await decodeProbes(video, null, 2);
			expect(decodeErrors(result.stderr)).toEqual([]);
			expect(result.width).toBe(640);
			expect(result.videoFrames).toBeGreaterThanOrEqual(15);
		} finally {
			video.close();
		}
	});
});
