import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../server/common/emitter.js';
import type { Server } from '../../server/server.js';
import { ChildSet } from '../helpers/children.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';

const children = new ChildSet();

function gstPublish(sink: 'rtmp2sink' | 'rtmpsink', url: string): ChildProcess {
	const pipeline =
		'videotestsrc is-live=true ! video/x-raw,format=I420,width=480,height=270,framerate=25/1 ' +
		'! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! h264parse ! flvmux streamable=true name=m ' +
		`audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=2 ! voaacenc ! m. m. ! ${sink} location=${url}`;
	return children.add(spawn('gst-launch-1.0', ['-q', ...pipeline.split(' ')], { stdio: ['ignore', 'ignore', 'pipe'] }));
}

describe('RTMP ingest with GStreamer', () => {
	let server: Server | null = null;
	afterEach(async () => {
		await children.killAll();
		await server?.close();
		server = null;
	});

	for (const sink of ['rtmp2sink', 'rtmpsink'] as const) {
		// rtmp2sink is GStreamer's own RTMP client; rtmpsink wraps librtmp, the library OBS is built on.
		it(`${sink} publishes H.264 + AAC and goes live`, async () => {
			server = await startTestServer();
			const s = server;
			const name = `gst-${sink}`;
			const pubP = waitFor(s.registry, 'publish', 20_000, (st) => st.name === name);
			const child = gstPublish(sink, `rtmp://127.0.0.1:${s.rtmp!.port}/live/${name}`);
			const [, pub] = await pubP;
			let frames = 0;
			let audio = 0;
			pub.on('video', () => frames++);
			pub.on('audio', () => audio++);
			await eventually(() => frames >= 25 && audio >= 20, 20_000);
			const info = (await (await fetch(`${baseUrl(s)}/api/streams/${name}`)).json()) as Record<string, unknown>;
			expect(info).toMatchObject({
				live: true,
				video: { codec: 'h264', width: 480, height: 270 },
				audio: { codec: 'aac', sampleRate: 48000, channels: 2 },
			});
			expect(s.rtmp!.stats().malformedMessages).toBe(0);
			const ended = waitFor(pub, 'end', 5000);
			child.kill('SIGINT');
			await ended;
		});
	}
});
