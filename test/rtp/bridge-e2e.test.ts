import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from '../../server/server.js';
import { runFfmpeg, stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { eventually, startTestServer } from '../helpers/server.js';
import { RtpProbe, decodeErrors, decodeProbes } from '../bridge/helpers.js';
import { deleteRtp, ffmpegRtpArgs, postRtp, streamInfo } from './helpers.js';

describe('RTP ingest -> bridge -> mediasoup, end to end', () => {
	let server: Server;
	const probes: RtpProbe[] = [];
	beforeAll(async () => {
		server = await startTestServer({ rtmp: { enabled: false }, rtpIngest: { listenIp: '127.0.0.1' } });
	});
	afterEach(async () => {
		for (const p of probes.splice(0)) p.close();
		await stopAllFfmpeg();
	});
	afterAll(async () => {
		await server.close();
	});

	it('reaches a PlainTransport consumer as H.264 passthrough and untouched Opus that decode cleanly', async () => {
		const { status, body } = await postRtp(server, 'e2e1');
		expect(status).toBe(201);
		runFfmpeg(ffmpegRtpArgs(body));
		await eventually(() => server.routers.producers('e2e1').length === 2, 20_000);

		const info = await streamInfo(server, 'e2e1');
		expect(info.webrtc).toMatchObject({ videoPath: 'passthrough', audioPath: 'opus-passthrough' });

		const { router } = await server.routers.viewerRouter('e2e1');
		const probe = async (kind: 'audio' | 'video'): Promise<RtpProbe> => {
			const producer = server.routers.producers('e2e1').find((p) => p.kind === kind)!;
			const p = await RtpProbe.create(router, producer);
			probes.push(p);
			return p;
		};
		const video = await probe('video');
		const audio = await probe('audio');
		const result = await decodeProbes(video, audio, 3);
		expect(decodeErrors(result.stderr)).toEqual([]);
		expect(result).toMatchObject({ width: 640, height: 360, sampleRate: 48000, channels: 'stereo' });
		expect(result.videoFrames).toBeGreaterThanOrEqual(50);
		expect(result.audioFrames).toBeGreaterThanOrEqual(100);
		expect(server.rtpIngest!.session('e2e1')!.stats().video.lost).toBe(0);

		expect((await deleteRtp(server, 'e2e1')).status).toBe(204);
		await eventually(() => server.routers.producers('e2e1').length === 0, 10_000);
	});
});
