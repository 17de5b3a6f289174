import { performance } from 'node:perf_hooks';

/** performance.now() (what frames carry in receivedAt) as Unix ms. */
export function wallFromPerf(perfMs: number): number {
	return performance.timeOrigin + perfMs;
}

/** Now, as Unix ms with sub-millisecond resolution. */
export function wallNow(): number {
	return performance.timeOrigin + performance.now();
}

/**
 * One mapping from the publisher's timeline (ms) to the wall clock, shared by
 * the audio and video of a publication. Both streams' RTP timestamps come
 * from publisher times and both streams' sender reports from this mapping,
 * so a receiver that lines them up by their SRs lines up what the publisher
 * lined up, and holds neither back.
 *
 * It is fixed at the first frame's arrival and moved only when arrivals
 * drift from it by more than `reanchorMs` (a publisher that paused, or whose
 * timestamps jumped); both streams move together, so sync survives that too.
 */
export class MediaClock {
	readonly reanchorMs: number;
	#t0 = 0;
	#wall0 = 0;
	#anchored = false;
	#reanchors = 0;

	constructor(reanchorMs = 3000) {
		this.reanchorMs = reanchorMs;
	}

	get anchored(): boolean {
		return this.#anchored;
	}

	get reanchors(): number {
		return this.#reanchors;
	}

	/** Feeds a frame's publisher time and its arrival (Unix ms). */
	observe(t: number, arrivalWallMs: number): void {
		if (!this.#anchored) {
			this.#t0 = t;
			this.#wall0 = arrivalWallMs;
			this.#anchored = true;
			return;
		}
		const expected = this.#wall0 + (t - this.#t0);
		if (Math.abs(arrivalWallMs - expected) > this.reanchorMs) {
			this.#t0 = t;
			this.#wall0 = arrivalWallMs;
			this.#reanchors++;
		}
	}

	/** The publisher time that corresponds to a wall-clock time; null before the first frame. */
	mediaTimeAt(wallMs: number): number | null {
		if (!this.#anchored) return null;
		return this.#t0 + (wallMs - this.#wall0);
	}

	/** The wall-clock time of a publisher time; null before the first frame. */
	wallTimeOf(t: number): number | null {
		if (!this.#anchored) return null;
		return this.#wall0 + (t - this.#t0);
	}
}
