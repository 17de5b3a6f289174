// `/watch/NAME`: plays a stream over WebRTC and falls back to HLS by itself
// when WebRTC is missing, when the media connection fails, or when no frame
// arrives in time; `?mode=hls` asks for HLS, `?mode=webrtc` forbids falling back.
import { SignalingError, watch } from '../lib/index.js';
import type { Viewer, ViewerStats } from '../lib/index.js';
import { FrameRate, startHls } from './hls.js';
import type { Playback, PlaybackStats } from './hls.js';
import { StatsOverlay } from './stats.js';

/** How long a live stream may take to show its first WebRTC frame before HLS takes over. */
const FIRST_FRAME_TIMEOUT_MS = 6000;

type Path = 'connecting' | 'webrtc' | 'hls';

/** What the page exposes for tests and for people poking at it from the console. */
export interface PlayerState {
	path: Path;
	/** Why HLS is used, when it is. */
	reason: string | null;
	state: 'connecting' | 'waiting' | 'playing' | 'error';
	/** Frames the <video> presented (requestVideoFrameCallback). */
	framesPresented: number;
	stats: PlaybackStats | null;
}

declare global {
	interface Window {
		subsecondPlayer?: PlayerState;
	}
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
	const e = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
	if (text !== undefined) e.textContent = text;
	return e;
}

function webrtcStats(viewer: Viewer, video: HTMLVideoElement, rate: FrameRate, last: ViewerStats | null, prev: { bytes: number; at: number } | null): PlaybackStats {
	const v = last?.video ?? null;
	let bitrateKbps: number | null = null;
	if (v && prev && last && last.at > prev.at) {
		const bytes = v.bytesReceived + (last.audio?.bytesReceived ?? 0);
		bitrateKbps = ((bytes - prev.bytes) * 8) / (last.at - prev.at);
	}
	const lost = (v?.packetsLost ?? 0) + (last?.audio?.packetsLost ?? 0);
	const received = (v?.packetsReceived ?? 0) + (last?.audio?.packetsReceived ?? 0);
	const jb = v?.jitterBufferMs ?? null;
	// Behind live, as far as the receiver can see: the browser holds video and
	// audio to the larger of their jitter buffers to keep lip sync, plus half a
	// round trip. Capture, encoding and the server add to this, so it is a floor.
	const ajb = last?.audio?.jitterBufferMs ?? null;
	const held = jb === null && ajb === null ? null : Math.max(jb ?? 0, ajb ?? 0);
	const delayMs = held === null ? null : held + (last?.rttMs ?? 0) / 2;
	return {
		path: 'WebRTC',
		width: video.videoWidth || (v?.frameWidth ?? 0),
		height: video.videoHeight || (v?.frameHeight ?? 0),
		fps: v?.framesPerSecond ?? rate.sample(video),
		bitrateKbps,
		packetsLost: last ? lost : null,
		packetLossPct: received + lost > 0 ? (lost * 100) / (received + lost) : null,
		jitterBufferMs: jb,
		delayMs,
		delayIsFloor: true,
		detail: viewer.live ? 'live' : 'waiting',
	};
}

export function renderWatch(root: HTMLElement, name: string): void {
	document.title = `${name} · subsecond`;
	const params = new URLSearchParams(location.search);
	const mode = params.get('mode');
	const token = params.get('token') ?? undefined;

	const state: PlayerState = { path: 'connecting', reason: null, state: 'connecting', framesPresented: 0, stats: null };
	window.subsecondPlayer = state;

	const header = el('header');
	const back = el('a', { href: '/', class: 'brand' }, 'subsecond');
	header.append(back, el('h1', {}, name));
	const main = el('main');
	const player = el('div', { class: 'player' });
	const video = el('video', { playsinline: '', autoplay: '', id: 'video' });
	video.muted = true; // autoplay works everywhere only when muted; the button unmutes
	const top = el('div', { class: 'overlay-top' });
	const status = el('span', { class: 'status', id: 'path' }, 'Connecting…');
	top.append(status);
	const message = el('div', { class: 'message', id: 'message' }, 'Connecting…');
	const controls = el('div', { class: 'controls' });
	const unmute = el('button', { class: 'primary', id: 'unmute', type: 'button' }, 'Unmute');
	const statsButton = el('button', { id: 'toggle-stats', type: 'button', title: 'Stats' }, 'Stats');
	controls.append(unmute, statsButton);
	const overlay = new StatsOverlay();
	player.append(video, top, message, controls);
	// The stats sit over the video on wide screens and below it on narrow ones.
	const stage = el('div', { class: 'stage' });
	stage.append(player, overlay.element);
	const info = el('div', { class: 'watch-info' });
	const hlsLink = el('a', { href: `/hls/${encodeURIComponent(name)}/index.m3u8${token ? `?token=${encodeURIComponent(token)}` : ''}` }, 'HLS URL');
	const modeLink = el('a', { href: `?mode=${mode === 'hls' ? 'webrtc' : 'hls'}${token ? `&token=${encodeURIComponent(token)}` : ''}` }, mode === 'hls' ? 'Play over WebRTC' : 'Play over HLS');
	info.append(hlsLink, modeLink);
	main.append(stage, info);
	root.replaceChildren(header, main);

	const setState = (s: PlayerState['state'], text: string | null): void => {
		state.state = s;
		root.dataset.state = s;
		message.textContent = text ?? '';
		message.hidden = text === null;
	};
	const setPath = (path: Path, label: string, reason: string | null = null): void => {
		state.path = path;
		state.reason = reason;
		root.dataset.path = path;
		status.textContent = reason ? `${label} — ${reason}` : label;
	};

	unmute.addEventListener('click', () => {
		video.muted = !video.muted;
		unmute.textContent = video.muted ? 'Unmute' : 'Mute';
		unmute.classList.toggle('primary', video.muted);
		void video.play().catch(() => undefined);
	});
	statsButton.addEventListener('click', () => overlay.toggle());
	if (params.has('stats')) overlay.toggle();

	// Count presented frames: the ground truth for "it plays".
	const onFrame = (): void => {
		state.framesPresented++;
		if (state.state !== 'playing') setState('playing', null);
		video.requestVideoFrameCallback(onFrame);
	};
	video.requestVideoFrameCallback(onFrame);

	let playback: Playback | null = null;
	const useHls = (reason: string): void => {
		playback?.close();
		const url = `/hls/${encodeURIComponent(name)}/index.m3u8${token ? `?token=${encodeURIComponent(token)}` : ''}`;
		setPath('hls', 'HLS', reason);
		setState('waiting', 'Loading HLS…');
		playback = startHls(video, url, {
			onPlaying: () => setState('playing', null),
			onError: (msg) => {
				// hls.js keeps retrying: a stream that is not live yet 404s until it is.
				if (state.framesPresented === 0) setState('waiting', `Waiting for the stream (HLS: ${msg})`);
			},
		});
		overlay.attach(playback);
	};

	const useWebRtc = async (): Promise<void> => {
		setPath('connecting', 'WebRTC: connecting');
		let viewer: Viewer;
		try {
			viewer = await watch({ stream: name, ...(token ? { token } : {}) });
		} catch (err) {
			const code = err instanceof SignalingError ? err.code : null;
			if (code === 'unauthorized') {
				setPath('connecting', 'Not allowed');
				setState('error', `You are not allowed to watch this stream (${(err as Error).message}).`);
				return;
			}
			if (mode === 'webrtc') {
				setState('error', `WebRTC failed: ${(err as Error).message}`);
				return;
			}
			useHls(`fell back: ${(err as Error).message}`);
			return;
		}
		setPath('webrtc', 'WebRTC');
		let firstFrameTimer = 0;
		let fellBack = false;
		const fallBack = (reason: string): void => {
			if (fellBack || mode === 'webrtc') return;
			fellBack = true;
			window.clearTimeout(firstFrameTimer);
			viewer.close();
			useHls(`fell back: ${reason}`);
		};
		const armFirstFrame = (): void => {
			window.clearTimeout(firstFrameTimer);
			const before = state.framesPresented;
			firstFrameTimer = window.setTimeout(() => {
				if (state.framesPresented === before && viewer.live) fallBack(`no WebRTC frame within ${FIRST_FRAME_TIMEOUT_MS / 1000} s`);
			}, FIRST_FRAME_TIMEOUT_MS);
		};
		const rate = new FrameRate();
		let lastStats: ViewerStats | null = null;
		let prev: { bytes: number; at: number } | null = null;
		viewer.on('stats', (s) => {
			if (lastStats?.video) prev = { bytes: lastStats.video.bytesReceived + (lastStats.audio?.bytesReceived ?? 0), at: lastStats.at };
			lastStats = s;
		});
		playback = {
			path: 'WebRTC',
			stats: () => Promise.resolve(webrtcStats(viewer, video, rate, lastStats, prev)),
			close: () => viewer.close(),
		};
		overlay.attach(playback);
		viewer.on('live', () => {
			setPath('webrtc', 'WebRTC');
			if (state.framesPresented === 0) setState('waiting', 'Starting…');
			armFirstFrame();
		});
		viewer.on('offline', (reason) => {
			window.clearTimeout(firstFrameTimer);
			setState('waiting', `The stream is offline (${reason}); it resumes by itself.`);
		});
		viewer.on('reconnecting', () => {
			setPath('webrtc', 'WebRTC: reconnecting');
			setState('waiting', 'Reconnecting…');
		});
		viewer.on('error', (err, fatal) => {
			if (fatal) {
				if (err instanceof SignalingError && err.code === 'unauthorized') setState('error', err.message);
				else fallBack(err.message);
			} else if (state.framesPresented === 0 && /media connection failed/.test(err.message)) {
				fallBack('the WebRTC media connection failed (UDP and TCP blocked?)');
			}
		});
		if (!viewer.live) setState('waiting', 'Waiting for the stream to go live…');
		else armFirstFrame();
		try {
			await viewer.attach(video);
		} catch {
			// Autoplay refused even muted: the first click starts it.
			setState('waiting', 'Tap to play');
			root.addEventListener('click', () => void video.play().catch(() => undefined), { once: true });
		}
	};

	if (mode === 'hls') useHls('requested with ?mode=hls');
	else if (typeof RTCPeerConnection !== 'function' && mode !== 'webrtc') useHls('fell back: this browser has no WebRTC');
	else void useWebRtc();

	overlay.start();
	window.setInterval(() => {
		state.stats = overlay.last;
	}, 1000);
	window.addEventListener('pagehide', () => playback?.close());
}
