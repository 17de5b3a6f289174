import type { Playback, PlaybackStats } from './hls.js';

function fmt(v: number | null, unit: string, digits = 0): string {
	return v === null || !Number.isFinite(v) ? '–' : `${v.toFixed(digits)}${unit}`;
}

/** The stats overlay a streamer wants: path, resolution, fps, bitrate, loss, buffer and delay. */
export class StatsOverlay {
	readonly element: HTMLElement;
	#timer = 0;
	#playback: Playback | null = null;
	last: PlaybackStats | null = null;

	constructor() {
		this.element = document.createElement('dl');
		this.element.className = 'stats';
		this.element.id = 'stats';
		this.element.hidden = true;
	}

	attach(playback: Playback | null): void {
		this.#playback = playback;
	}

	toggle(): void {
		this.element.hidden = !this.element.hidden;
	}

	start(): void {
		const tick = async (): Promise<void> => {
			const p = this.#playback;
			if (p) {
				try {
					this.last = await p.stats();
					this.#render(this.last);
				} catch {
					// stats are best effort
				}
			}
			this.#timer = window.setTimeout(() => void tick(), 1000);
		};
		void tick();
	}

	stop(): void {
		window.clearTimeout(this.#timer);
	}

	#render(s: PlaybackStats): void {
		const rows: [string, string][] = [
			['path', `${s.path} (${s.detail})`],
			['resolution', s.width ? `${s.width}×${s.height}` : '–'],
			['fps', fmt(s.fps, '', 1)],
			['bitrate', fmt(s.bitrateKbps, ' kbit/s')],
			['loss', s.packetsLost === null ? '–' : `${s.packetsLost} (${fmt(s.packetLossPct, '%', 2)})`],
			[s.path === 'WebRTC' ? 'jitter buf' : 'buffer', fmt(s.jitterBufferMs, ' ms')],
			['delay', s.delayMs === null ? '–' : `${s.delayIsFloor ? '≥' : '≈'} ${fmt(s.delayMs, ' ms')}`],
		];
		const frag = document.createDocumentFragment();
		for (const [k, v] of rows) {
			const dt = document.createElement('dt');
			dt.textContent = k;
			const dd = document.createElement('dd');
			dd.textContent = v;
			dd.dataset.stat = k;
			frag.append(dt, dd);
		}
		this.element.replaceChildren(frag);
	}
}
