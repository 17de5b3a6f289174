import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { signPublishKey } from '../../server/auth/publish-keys.js';
import { waitFor } from '../../server/common/emitter.js';
import type { AudioFrame, VideoFrame } from '../../server/core/media.js';
import type { Publication } from '../../server/core/stream.js';
import type { Server } from '../../server/server.js';
import { runFfmpeg, stopAllFfmpeg, testSourceArgs } from '../helpers/ffmpeg.js';
import type { RunningFfmpeg, TestSourceOptions } from '../helpers/ffmpeg.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';

function publish(server: Server, path: string, source: TestSourceOptions = {}): RunningFfmpeg {
	return runFfmpeg([...testSourceArgs(source), '-f', 'flv', `rtmp://127.0.0.1:${server.rtmp!.port}/${path}`]);
}

async function nextPublication(server: Server, name: string, timeoutMs = 15_000): Promise<Publication> {
	const [, pub] = await waitFor(server.registry, 'publish', timeoutMs, (s) => s.name === name);
	return pub;
}

describe('RTMP ingest with ffmpeg', () => {
	let server: Server | null = null;
	afterEach(async () => {
		await stopAllFfmpeg();
		await server?.close();
		server = null;
	});

	it('goes live with the right video and audio, monotonic frames, and goes offline when ffmpeg stops', async () => {
		server = await startTestServer();
		const s = server;
		const accepted = new Promise<number>((resolve) => s.rtmp!.once('connection', () => resolve(performance.now())));
		const pubP = nextPublication(s, 'cam1');
		const ff = publish(s, 'live/cam1', { width: 640, height: 360, fps: 25, gop: 25, profile: 'high', audioRate: 44100, audioChannels: 1 });
		const pub = await pubP;
		const video: VideoFrame[] = [];
		const audio: AudioFrame[] = [];
		pub.on('video', (f) => video.push(f));
		pub.on('audio', (f) => audio.push(f));
		await waitFor(pub, 'videoConfig', 10_000);
		// Live (codec known) within 2 s of the encoder's connection.
		expect(performance.now() - (await accepted)).toBeLessThan(2000);

		await eventually(() => video.length >= 60 && audio.length >= 50, 20_000);
		const res = await fetch(`${baseUrl(s)}/api/streams/cam1`);
		expect(res.status).toBe(200);
		const info = (await res.json()) as Record<string, unknown>;
		expect(info).toMatchObject({
			name: 'cam1',
			live: true,
			video: { codec: 'h264', profile: 'High', width: 640, height: 360, fps: 25 },
			audio: { codec: 'aac', sampleRate: 44100, channels: 1 },
		});
		const list = (await (await fetch(`${baseUrl(s)}/api/streams`)).json()) as { name: string }[];
		expect(list.map((x) => x.name)).toContain('cam1');
		expect(pub.protocol).toBe('rtmp');
		expect(pub.remoteAddress).toBe('127.0.0.1');

		expect(video[0]!.keyframe).toBe(true);
		for (let i = 1; i < video.length; i++) {
			expect(video[i]!.dts).toBeGreaterThan(video[i - 1]!.dts);
			expect(video[i]!.receivedAt).toBeGreaterThanOrEqual(video[i - 1]!.receivedAt);
		}
		for (let i = 1; i < audio.length; i++) expect(audio[i]!.pts).toBeGreaterThan(audio[i - 1]!.pts);
		// One keyframe per second at 25 fps, flagged as such.
		const keyframes = video.filter((f) => f.keyframe);
		expect(keyframes.length).toBeGreaterThanOrEqual(2);
		for (const k of keyframes.slice(1)) expect(Math.round((k.dts - keyframes[0]!.dts) / 40) % 25).toBe(0);
		// ffmpeg's metadata arrives through @setDataFrame.
		expect(pub.metadata).toMatchObject({ width: 640, height: 360 });

		const stats = s.rtmp!.stats();
		expect(stats).toMatchObject({ connections: 1, publishing: 1 });
		expect(stats.mediaMessages).toBeGreaterThan(100);
		expect(stats.malformedMessages).toBe(0);

		// ffmpeg unpublishes (FCUnpublish, deleteStream) as it stops: offline no later than 1 s after it is gone.
		const offlineAt = waitFor(s.registry, 'unpublish', 10_000).then(() => performance.now());
		const exitedAt = ff.exited.then(() => performance.now());
		await ff.stop();
		expect((await offlineAt) - (await exitedAt)).toBeLessThan(1000);
		expect(s.registry.get('cam1')!.live).toBe(false);
		expect((await fetch(`${baseUrl(s)}/api/streams/cam1`)).status).toBe(404);
		await eventually(() => s.rtmp!.stats().connections === 0, 5000);
	});

	it('ends the stream at once when the encoder dies without unpublishing', async () => {
		server = await startTestServer();
		const pubP = nextPublication(server, 'cam9');
		const ff = publish(server, 'live/cam9', { audio: false });
		const pub = await pubP;
		await waitFor(pub, 'video', 10_000);
		const ended = waitFor(pub, 'end', 5000);
		const killedAt = performance.now();
		ff.child.kill('SIGKILL');
		const [reason] = await ended;
		expect(performance.now() - killedAt).toBeLessThan(1000);
		expect(reason).toMatch(/closed/);
	});

	it('reports the publish URL in /api/info', async () => {
		server = await startTestServer();
		const info = (await (await fetch(`${baseUrl(server)}/api/info`)).json()) as { rtmp: unknown };
		expect(info.rtmp).toEqual({ port: server.rtmp!.port, url: `rtmp://127.0.0.1:${server.rtmp!.port}/live`, rtmpsPort: null });
	});

	it('enforces publish keys: wrong, missing and expired keys are refused; static and signed keys work', async () => {
		const secret = 'hmac-secret';
		server = await startTestServer({ auth: { publish: { keys: { cam2: 'letmein' }, hmacSecret: secret } } });
		const s = server;
		const refused = async (path: string, why: RegExp): Promise<void> => {
			const ff = publish(s, path, { audio: false, duration: 20 });
			const code = await ff.exited;
			expect(code).not.toBe(0);
			expect(ff.stderr()).toMatch(why);
			expect(s.registry.get('cam2')?.live ?? false).toBe(false);
		};
		await refused('live/cam2?key=wrong', /wrong publish key for stream cam2/);
		await refused('live/cam2', /needs a publish key/);
		const expired = signPublishKey(secret, 'cam2', Math.floor(Date.now() / 1000) - 10);
		await refused(`live/cam2?key=${expired}`, /expired/);
		// A key signed for another stream is no key for this one.
		await refused(`live/cam2?key=${signPublishKey(secret, 'other', Math.floor(Date.now() / 1000) + 3600)}`, /wrong publish key/);
		await eventually(() => s.rtmp!.stats().connections === 0, 5000);

		for (const key of ['letmein', signPublishKey(secret, 'cam2', Math.floor(Date.now() / 1000) + 3600)]) {
			const pubP = nextPublication(s, 'cam2');
			const ff = publish(s, `live/cam2?key=${key}`, { audio: false });
			const pub = await pubP;
			await waitFor(pub, 'video', 10_000);
			const ended = waitFor(pub, 'end', 5000);
			await ff.stop();
			await ended;
		}
	});

	it('accepts a signed key computed with the openssl one-liner of docs/publishing.md', async () => {
		const secret = 'doc-secret';
		server = await startTestServer({ auth: { publish: { hmacSecret: secret } } });
		const script =
			'NAME=cam6; EXPIRY=$(( $(date +%s) + 3600 )); ' +
			'SIG=$(printf \'%s\' "$NAME:$EXPIRY" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d\' \' -f1); ' +
			'echo "$NAME?key=$EXPIRY.$SIG"';
		const streamKey = execFileSync('sh', ['-c', script], { env: { ...process.env, SECRET: secret }, encoding: 'utf8' }).trim();
		const [, expiry] = /key=(\d+)\./.exec(streamKey)!;
		expect(streamKey).toBe(`cam6?key=${signPublishKey(secret, 'cam6', Number(expiry))}`);
		const pubP = nextPublication(server, 'cam6');
		publish(server, `live/${streamKey}`, { audio: false });
		const pub = await pubP;
		await waitFor(pub, 'video', 10_000);
	});

	it('takes the key from the connect URL too (OBS server field rtmp://host/live?key=...)', async () => {
		server = await startTestServer({ auth: { publish: { keys: { cam3: 's3cr3t' } } } });
		const pubP = nextPublication(server, 'cam3');
		// ffmpeg's -rtmp_app/-rtmp_playpath split it the way OBS does: the query goes with the app.
		runFfmpeg([
			...testSourceArgs({ audio: false }),
			'-f', 'flv', '-rtmp_app', 'live?key=s3cr3t', '-rtmp_playpath', 'cam3', `rtmp://127.0.0.1:${server.rtmp!.port}/live?key=s3cr3t`,
		]);
		const pub = await pubP;
		await waitFor(pub, 'video', 10_000);
	});

	it('refuses an unknown application with a clear error', async () => {
		server = await startTestServer();
		const ff = publish(server, 'vod/cam4', { audio: false, duration: 20 });
		const code = await ff.exited;
		expect(code).not.toBe(0);
		expect(ff.stderr()).toMatch(/unknown application 'vod'/);
	});

	it('lets a second publisher on the same name take over; the stream continues with it', async () => {
		server = await startTestServer();
		const s = server;
		const firstP = nextPublication(s, 'cam5');
		const ff1 = publish(s, 'live/cam5', { audio: false });
		const first = await firstP;
		await waitFor(first, 'video', 10_000);

		const secondP = nextPublication(s, 'cam5');
		const firstEnded = waitFor(first, 'end', 15_000);
		const ff2 = publish(s, 'live/cam5', { audio: false, width: 320, height: 240 });
		const second = await secondP;
		const [reason] = await firstEnded;
		expect(reason).toMatch(/taken over/);
		// The first encoder is hung up on, and told why.
		expect(await ff1.exited).not.toBe(0);
		expect(ff1.stderr()).toMatch(/stopped by the server: taken over by a new publisher/);
		const frames: VideoFrame[] = [];
		second.on('video', (f) => frames.push(f));
		await eventually(() => frames.length >= 25, 15_000);
		expect(s.registry.get('cam5')!.publication).toBe(second);
		const info = (await (await fetch(`${baseUrl(s)}/api/streams/cam5`)).json()) as { video: { width: number } };
		expect(info.video.width).toBe(320);
		await eventually(() => s.rtmp!.stats().connections === 1, 5000);
		await ff2.stop();
	});
});
