import Hls from 'hls.js';

/** What the stats overlay shows, whatever the path. */
export interface PlaybackStats {
	path: 'WebRTC' | 'HLS';
	width: number;
	height: number;
	fps: number | null;
	bitrateKbps: number | null;
	packetsLost: number | null;
	packetLossPct: number | null;
	jitterBufferMs: number | null;
	/** Estimated delay behind the live edge, in ms. */
	delayMs: number | null;
	/** True when delayMs only counts what the receiver sees (a lower bound). */
	delayIsFloor?: boolean;
	detail: string;
}

export interface Playback {
	readonly path: 'WebRTC' | 'HLS';
	stats(): Promise<PlaybackStats>;
	close(): void;
}

export interface HlsCallbacks {
	onPlaying(): void;
	onError(message: string, fatal: boolean): void;
}

/** Frame counter from the video element, for fps on both paths. */
export class FrameRate {
	#last: { t: number; frames: number } | null = null;
	#fps: number | null = null;

	sample(video: HTMLVideoElement): number | null {
		const q = video.getVideoPlaybackQuality();
		const now = performance.now();
		if (this.#last && now - this.#last.t >= 500) {
			this.#fps = ((q.totalVideoFrames - this.#last.frames) * 1000) / (now - this.#last.t);
			this.#last = { t: now, frames: q.totalVideoFrames };
		} else if (!this.#last) {
			this.#last = { t: now, frames: q.totalVideoFrames };
		}
		return this.#fps;
	}
}

/**
 * Plays the stream's LL-HLS playlist: with the browser's own HLS where it has
 * one (Safari, iOS), otherwise with hls.js in low-latency mode.
 */
export function startHls(video: HTMLVideoElement, url: string, cb: HlsCallbacks): Playback {
	const rate = new FrameRate();
	let bytes = 0;
	let bytesAt = performance.now();
	let lastKbps: number | null = null;
	const onPlaying = (): void => cb.onPlaying();
	video.addEventListener('playing', onPlaying);

	const bitrate = (): number | null => {
		const now = performance.now();
		if (now - bytesAt >= 1000) {
			lastKbps = (bytes * 8) / (now - bytesAt);
			bytes = 0;
			bytesAt = now;
		}
		return lastKbps;
	};

	if (!Hls.isSupported() && video.canPlayType('application/vnd.apple.mpegurl')) {
		video.src = url;
		void video.play().catch(() => undefined);
		return {
			path: 'HLS',
			stats: () => {
				// Safari exposes the playlist's PROGRAM-DATE-TIME through getStartDate().
				const start = (video as HTMLVideoElement & { getStartDate?: () => Date }).getStartDate?.();
				const delayMs = start && !Number.isNaN(start.getTime()) ? Date.now() - (start.getTime() + video.currentTime * 1000) : null;
				return Promise.resolve({
					path: 'HLS' as const,
					width: video.videoWidth,
					height: video.videoHeight,
					fps: rate.sample(video),
					bitrateKbps: null,
					packetsLost: null,
					packetLossPct: null,
					jitterBufferMs: null,
					delayMs,
					detail: 'native HLS',
				});
			},
			close: () => {
				video.removeEventListener('playing', onPlaying);
				video.removeAttribute('src');
				video.load();
			},
		};
	}

	const hls = new Hls({
		lowLatencyMode: true,
		// Catch up with the live edge after a stall instead of staying behind.
		maxLiveSyncPlaybackRate: 1.5,
		backBufferLength: 10,
		liveDurationInfinity: true,
		// A live stream that restarts comes back with new segments: keep retrying.
		manifestLoadPolicy: {
			default: {
				maxTimeToFirstByteMs: 10_000,
				maxLoadTimeMs: 20_000,
				timeoutRetry: { maxNumRetry: 1000, retryDelayMs: 1000, maxRetryDelayMs: 4000 },
				errorRetry: { maxNumRetry: 1000, retryDelayMs: 1000, maxRetryDelayMs: 4000 },
			},
		},
	});
	hls.on(Hls.Events.FRAG_LOADED, (_e, data) => {
		bytes += data.frag.stats.loaded;
	});
	hls.on(Hls.Events.ERROR, (_e, data) => {
		if (!data.fatal) return;
		cb.onError(`${data.type}: ${data.details}`, true);
		if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
		else window.setTimeout(() => hls.loadSource(url), 2000);
	});
	hls.loadSource(url);
	hls.attachMedia(video);
	hls.on(Hls.Events.MANIFEST_PARSED, () => {
		void video.play().catch(() => undefined);
	});
	return {
		path: 'HLS',
		stats: () => {
			const latency = hls.latency;
			return Promise.resolve({
				path: 'HLS' as const,
				width: video.videoWidth,
				height: video.videoHeight,
				fps: rate.sample(video),
				bitrateKbps: bitrate(),
				packetsLost: null,
				packetLossPct: null,
				jitterBufferMs: video.buffered.length ? Math.max(0, (video.buffered.end(video.buffered.length - 1) - video.currentTime) * 1000) : null,
				delayMs: Number.isFinite(latency) && latency > 0 ? latency * 1000 : null,
				detail: hls.lowLatencyMode ? 'hls.js, low-latency' : 'hls.js',
			});
		},
		close: () => {
			video.removeEventListener('playing', onPlaying);
			hls.destroy();
		},
	};
}
