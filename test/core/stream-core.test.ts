import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../server/common/emitter.js';
import { StreamRegistry } from '../../server/core/stream.js';
import type { VideoFrame } from '../../server/core/media.js';
import { stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { publishFromFfmpeg } from '../helpers/flv-publisher.js';
import { eventually, testLogger } from '../helpers/server.js';

describe('stream core with real encoder output', () => {
	const registries: StreamRegistry[] = [];
	const newRegistry = (): StreamRegistry => {
		const r = new StreamRegistry({ logger: testLogger(), maxStreams: 10 });
		registries.push(r);
		return r;
	};
	afterEach(async () => {
		for (const r of registries.splice(0)) r.close();
		await stopAllFfmpeg();
	});

	it('parses configs and passes monotonic frames with keyframes flagged', async () => {
		const registry = newRegistry();
		const pub = publishFromFfmpeg(registry, 'core1', { width: 640, height: 360, fps: 25, gop: 25 });
		const frames: VideoFrame[] = [];
		pub.publication.on('video', (f) => frames.push(f));
		const [config] = await waitFor(pub.publication, 'videoConfig', 10_000);
		expect(config.width).toBe(640);
		expect(config.height).toBe(360);
		expect(config.profile).toBe('Constrained Baseline');
		expect(config.profileLevelId).toMatch(/^42c0/);
		await eventually(() => pub.publication.audio !== null && frames.length >= 30, 10_000);
		expect(pub.publication.audio).toMatchObject({ codec: 'aac', sampleRate: 48000, channels: 2 });
		expect(frames[0]?.keyframe).toBe(true);
		for (let i = 1; i < frames.length; i++) expect(frames[i]!.dts).toBeGreaterThan(frames[i - 1]!.dts);
		expect(frames.filter((f) => f.keyframe).length).toBeGreaterThanOrEqual(1);
		expect(pub.publication.hasBFrames).toBe(false);
		const info = registry.get('core1')!.info();
		expect(info).toMatchObject({ name: 'core1', live: true, video: { codec: 'h264', width: 640, height: 360 } });
		expect(info.video?.fps).toBe(25);
		await pub.stop();
		expect(registry.get('core1')!.live).toBe(false);
	});

	it('sees B-frames as composition offsets', async () => {
		const registry = newRegistry();
		const pub = publishFromFfmpeg(registry, 'core2', { profile: 'high', bframes: 2, audio: false });
		const [config] = await waitFor(pub.publication, 'videoConfig', 10_000);
		expect(config.profile).toBe('High');
		await eventually(() => pub.publication.hasBFrames, 10_000);
		await pub.stop();
	});

	it('lets a second publisher take over the name', async () => {
		const registry = newRegistry();
		const first = publishFromFfmpeg(registry, 'core3', { audio: false });
		await waitFor(first.publication, 'video', 10_000);
		const unpublished = waitFor(registry, 'unpublish', 5000);
		const second = publishFromFfmpeg(registry, 'core3', { audio: false });
		const [, oldPub, reason] = await unpublished;
		expect(oldPub).toBe(first.publication);
		expect(reason).toMatch(/taken over/);
		await waitFor(second.publication, 'video', 10_000);
		expect(registry.get('core3')!.publication).toBe(second.publication);
		await first.ffmpeg.exited;
		await second.stop();
	});
});
