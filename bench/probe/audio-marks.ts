// The latency probe's audio code: short tone bursts that start at known
// wall-clock instants (every MARK_PERIOD_MS, on the period's boundaries), the
// burst's pitch telling which of MARK_TONES_HZ.length consecutive instants it
// is. A receiver that finds a burst's onset knows when it was captured, as
// long as the delay is under MARK_PERIOD_MS * MARK_TONES_HZ.length. Pure
// functions with no Node or DOM imports: the publisher, the Node viewer and
// the browser's AudioWorklet share them.

/** A burst starts at every multiple of this, in wall-clock ms. */
export const MARK_PERIOD_MS = 500;
/** Pitches of consecutive bursts; wide apart, inside AAC's and Opus's band at 96 kbit/s. */
export const MARK_TONES_HZ = [500, 1000, 1500, 2000] as const;
export const MARK_BURST_MS = 60;
const AMPLITUDE = 0.5;
/** A receiver's onset threshold: well above codec pre-echo, well below the burst. */
const ONSET_LEVEL = 0.15;
/** Quiet needed before an onset counts (the gap between bursts is 440 ms). */
const QUIET_MS = 150;
/** The pitch is read over this window, starting PITCH_SKIP_MS after the onset. */
const PITCH_SKIP_MS = 5;
const PITCH_WINDOW_MS = 40;

/** Which tone a burst at wall time `markMs` (a multiple of the period) has. */
export function toneIndexOf(markMs: number): number {
	const k = Math.round(markMs / MARK_PERIOD_MS);
	return ((k % MARK_TONES_HZ.length) + MARK_TONES_HZ.length) % MARK_TONES_HZ.length;
}

/**
 * The audio signal at wall time `t` (ms): silence, or inside a burst a sine of
 * the burst's pitch, phase 0 at the burst's start. The same function of time
 * for every sample, so chunks generated at any size join without a seam.
 */
export function markSignal(t: number): number {
	const mark = Math.floor(t / MARK_PERIOD_MS) * MARK_PERIOD_MS;
	const into = t - mark;
	if (into >= MARK_BURST_MS) return 0;
	const hz = MARK_TONES_HZ[toneIndexOf(mark)] ?? 1000;
	return AMPLITUDE * Math.sin((2 * Math.PI * hz * into) / 1000);
}

/**
 * Fills interleaved 16-bit stereo PCM for `frames` samples, sample i being
 * captured at `startMs + i * 1000 / rate`.
 */
export function fillMarkPcm(out: Int16Array, frames: number, startMs: number, rate: number): void {
	for (let i = 0; i < frames; i++) {
		const v = Math.round(markSignal(startMs + (i * 1000) / rate) * 32767);
		out[2 * i] = v;
		out[2 * i + 1] = v;
	}
}

/** A burst found in received audio. */
export interface MarkOnset {
	/** Index of the onset sample in the stream fed to the detector. */
	sample: number;
	tone: number;
}

/**
 * Finds burst onsets in a mono stream fed in chunks of any size. The onset is
 * the first sample above ONSET_LEVEL after QUIET_MS of quiet; the pitch is
 * read from zero crossings over a window after it, and a burst whose pitch is
 * none of the tones (noise, a glitch) is not reported.
 */
export class MarkDetector {
	readonly rate: number;
	#pos = 0;
	#quiet = 0;
	#onset = -1;
	#crossings = 0;
	#last = 0;
	#inWindow = 0;
	readonly #quietNeeded: number;
	readonly #skip: number;
	readonly #window: number;

	constructor(rate: number) {
		this.rate = rate;
		this.#quietNeeded = Math.round((QUIET_MS * rate) / 1000);
		this.#skip = Math.round((PITCH_SKIP_MS * rate) / 1000);
		this.#window = Math.round((PITCH_WINDOW_MS * rate) / 1000);
		this.#quiet = this.#quietNeeded;
	}

	/** Feeds samples; returns the onsets whose pitch was read in this chunk. */
	push(samples: ArrayLike<number>): MarkOnset[] {
		const found: MarkOnset[] = [];
		for (let i = 0; i < samples.length; i++) {
			const x = samples[i] ?? 0;
			const pos = this.#pos++;
			const loud = Math.abs(x) > ONSET_LEVEL;
			if (this.#onset < 0) {
				if (loud && this.#quiet >= this.#quietNeeded) {
					this.#onset = pos;
					this.#crossings = 0;
					this.#inWindow = 0;
					this.#last = x;
				}
			} else {
				const since = pos - this.#onset;
				if (since >= this.#skip) {
					if ((x >= 0) !== (this.#last >= 0)) this.#crossings++;
					this.#inWindow++;
					if (this.#inWindow >= this.#window) {
						const hz = (this.#crossings / 2) / (this.#inWindow / this.rate);
						const tone = nearestTone(hz);
						if (tone >= 0) found.push({ sample: this.#onset, tone });
						this.#onset = -1;
					}
				}
				this.#last = x;
			}
			this.#quiet = loud ? 0 : this.#quiet + 1;
		}
		return found;
	}
}

function nearestTone(hz: number): number {
	let best = -1;
	let bestErr = Infinity;
	MARK_TONES_HZ.forEach((t, i) => {
		const err = Math.abs(hz - t);
		if (err < bestErr) {
			bestErr = err;
			best = i;
		}
	});
	return bestErr <= 150 ? best : -1;
}

/**
 * The capture instant of a burst of `tone` heard at wall time `heardMs`: the
 * latest instant with that tone not after it. Delays must stay under
 * MARK_PERIOD_MS * MARK_TONES_HZ.length (2 s) to be read right.
 */
export function markCaptureTime(tone: number, heardMs: number): number {
	let mark = Math.floor(heardMs / MARK_PERIOD_MS) * MARK_PERIOD_MS;
	for (let i = 0; i < MARK_TONES_HZ.length; i++) {
		if (toneIndexOf(mark) === tone) return mark;
		mark -= MARK_PERIOD_MS;
	}
	return mark;
}

/** One burst a viewer heard, and how late. */
export interface AudioSample {
	/** Capture time of the burst (wall ms). */
	markMs: number;
	/** Heard (played out, or for the Node viewer received) minus captured, ms. */
	delayMs: number;
}

/**
 * A/V offset at each heard burst: its audio delay minus the delay of the
 * video frame captured nearest to it (within `maxGapMs`). Positive: audio
 * is heard after the picture captured with it.
 */
export function avOffsets(audio: readonly AudioSample[], video: readonly { captureMs: number; delayMs: number }[], maxGapMs = 40): number[] {
	const frames = [...video].sort((a, b) => a.captureMs - b.captureMs);
	const out: number[] = [];
	for (const a of audio) {
		let lo = 0;
		let hi = frames.length - 1;
		while (lo < hi) {
			const mid = (lo + hi) >> 1;
			if ((frames[mid]?.captureMs ?? 0) < a.markMs) lo = mid + 1;
			else hi = mid;
		}
		let best: { captureMs: number; delayMs: number } | null = null;
		for (const f of [frames[lo - 1], frames[lo]]) {
			if (f && Math.abs(f.captureMs - a.markMs) <= maxGapMs && (!best || Math.abs(f.captureMs - a.markMs) < Math.abs(best.captureMs - a.markMs))) best = f;
		}
		if (best) out.push(a.delayMs - best.delayMs);
	}
	return out;
}
