// Runs in the browser: watches a subsecond stream with the viewer library
// (client/web/lib, what the web player uses) and reads the probe's timecode.
import './globals.js';
import './rtc-stats.js';
import { watch } from '../../../client/web/lib/index.js';
import { readAudio } from './audio-reader.js';
import { readFrames } from './reader.js';

window.startOurs = async (server: string, stream: string): Promise<void> => {
	const video = document.querySelector('video');
	if (!video) throw new Error('no video element');
	window.probe = { results: null, joinedAt: performance.timeOrigin + performance.now(), error: null };
	try {
		// Viewer options the benchmark sets before calling startOurs (audio, jitterBufferTargetMs).
		const extra = (window as unknown as { probeOptions?: { jitterBufferTargetMs?: number; audio?: boolean } }).probeOptions ?? {};
		const viewer = await watch({ server, stream, statsIntervalMs: 0, ...extra });
		window.probe.results = readFrames(video);
		window.probe.timeline = viewer.timeline;
		await viewer.attach(video);
		if (extra.audio !== false) window.probe.audio = await readAudio(viewer.media);
	} catch (err) {
		window.probe.error = String(err);
	}
};
