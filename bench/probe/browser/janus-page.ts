// Runs in the browser: watches a Janus streaming mountpoint over Janus's HTTP
// API (no janus.js needed) and reads the probe's timecode from its frames.
import './globals.js';
import './rtc-stats.js';
import { readAudio } from './audio-reader.js';
import { readFrames } from './reader.js';

interface JanusReply {
	janus: string;
	data?: { id: number };
	jsep?: RTCSessionDescriptionInit;
	plugindata?: { data?: Record<string, unknown> };
	error?: { reason?: string };
}

async function post(url: string, body: Record<string, unknown>): Promise<JanusReply> {
	const res = await fetch(url, { method: 'POST', body: JSON.stringify({ ...body, transaction: Math.random().toString(36).slice(2) }) });
	const reply = (await res.json()) as JanusReply;
	if (reply.janus === 'error') throw new Error(`janus: ${reply.error?.reason ?? 'error'}`);
	return reply;
}

window.startJanus = async (base: string, mountpoint: number): Promise<void> => {
	const video = document.querySelector('video');
	if (!video) throw new Error('no video element');
	window.probe = { results: null, joinedAt: performance.timeOrigin + performance.now(), error: null };
	try {
		const session = (await post(base, { janus: 'create' })).data?.id;
		const handle = (await post(`${base}/${session}`, { janus: 'attach', plugin: 'janus.plugin.streaming' })).data?.id;
		const hurl = `${base}/${session}/${handle}`;
		await post(hurl, { janus: 'message', body: { request: 'watch', id: mountpoint } });
		// The offer arrives as an event on the session's long poll.
		let offer: RTCSessionDescriptionInit | undefined;
		while (!offer) {
			const ev = (await (await fetch(`${base}/${session}?maxev=1&rid=${Date.now()}`)).json()) as JanusReply | JanusReply[];
			for (const e of Array.isArray(ev) ? ev : [ev]) if (e.jsep) offer = e.jsep;
		}
		const pc = new RTCPeerConnection();
		const stream = new MediaStream();
		pc.ontrack = (e) => {
			stream.addTrack(e.track);
			video.srcObject = stream;
		};
		await pc.setRemoteDescription(offer);
		await pc.setLocalDescription(await pc.createAnswer());
		// Send the answer with every candidate in it: no trickle to implement.
		await new Promise<void>((resolve) => {
			if (pc.iceGatheringState === 'complete') return resolve();
			pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
			setTimeout(resolve, 2000);
		});
		await post(hurl, { janus: 'message', body: { request: 'start' }, jsep: pc.localDescription?.toJSON() });
		window.setInterval(() => void post(`${base}/${session}`, { janus: 'keepalive' }).catch(() => undefined), 25_000);
		// Keep draining the event queue so Janus does not drop the session.
		void (async () => {
			for (;;) await fetch(`${base}/${session}?maxev=5&rid=${Date.now()}`).catch(() => undefined);
		})();
		window.probe.results = readFrames(video);
		window.probe.audio = await readAudio(stream);
		await video.play().catch(() => undefined);
	} catch (err) {
		window.probe.error = String(err);
	}
};
