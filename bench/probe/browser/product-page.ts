// Injected into the product's own player page (/watch/NAME) before its
// scripts run: keeps its peer connections for getStats, and once the player
// has put a stream on its <video>, reads the timecode from every presented
// frame and the tone bursts from the audio, as a viewer sees and hears them.
// The page itself is not changed: it plays as shipped (muted autoplay, lip
// sync on), and the probe listens beside it.
import './globals.js';
import './rtc-stats.js';
import { readAudio } from './audio-reader.js';
import { readFrames } from './reader.js';

window.probe = { results: null, joinedAt: performance.timeOrigin, error: null, audio: null };

const timer = setInterval(() => {
	const video = document.querySelector('video');
	const stream = video?.srcObject;
	if (!video || !(stream instanceof MediaStream)) return;
	clearInterval(timer);
	const probe = window.probe;
	if (!probe) return;
	probe.results = readFrames(video);
	readAudio(stream).then(
		(a) => (probe.audio = a),
		(err: unknown) => (probe.error = `audio reader: ${String(err)}`),
	);
}, 20);
