/**
 * RTP timestamps to one publisher timeline in milliseconds.
 *
 * Each RTP stream has its own clock rate and a random start offset, so the
 * video and audio timestamps of one sender say nothing about each other. The
 * sender's RTCP sender reports do: each pairs an RTP timestamp with the
 * sender's wall clock (NTP), the same clock for all its streams. Until those
 * arrive, each stream starts at the arrival time of its first packet; the first
 * sender report then fixes the NTP-to-timeline offset without moving that
 * stream, and each other stream is moved once onto it. After that the mapping
 * only moves when a report disagrees by more than the drift threshold, because
 * every move is a jump in the timestamps that downstream must absorb; moves
 * back are spread out so timestamps never decrease.
 */

const TWO_32 = 0x1_0000_0000;

/** The extended (unwrapped) value of a 32-bit RTP timestamp nearest to `ref`. */
export function extendNear(ts32: number, ref: number): number {
	const refLow = ((ref % TWO_32) + TWO_32) % TWO_32;
	let d = (((ts32 >>> 0) - refLow) % TWO_32 + TWO_32) % TWO_32;
	if (d >= TWO_32 / 2) d -= TWO_32;
	return ref + d;
}

/** Unwraps 32-bit RTP timestamps into a continuous number line. */
export class TimestampUnwrapper {
	#last: number | null = null;

	/** What `ts32` would unwrap to, without moving the reference. */
	peek(ts32: number): number {
		// Start one cycle up so timestamps just before the first stay positive.
		return this.#last === null ? (ts32 >>> 0) + TWO_32 : extendNear(ts32, this.#last);
	}

	commit(ext: number): void {
		this.#last = ext;
	}

	unwrap(ts32: number): number {
		const ext = this.peek(ts32);
		this.#last = ext;
		return ext;
	}

	get last(): number | null {
		return this.#last;
	}

	reset(): void {
		this.#last = null;
	}
}

/**
 * A backward correction is spread out, media time running this much slower
 * until it is absorbed, so timestamps never go back (a step back would look
 * like B-frames downstream and upset receivers' jitter buffers).
 */
const SLEW_RATE = 0.1;
/** Backward corrections larger than this are stepped: spreading them would take too long. */
const MAX_SLEW_MS = 1000;

/** Maps one stream's extended RTP timestamps to timeline milliseconds. */
export class MediaClock {
	readonly clockRate: number;
	#base = 0;
	#offsetMs = 0;
	#started = false;
	/** A backward correction in progress: `totalMs` reached linearly over `span` timestamp units from `from`. */
	#slew: { from: number; span: number; totalMs: number } | null = null;
	/** The mapping was set from a sender report. */
	synced = false;

	constructor(clockRate: number) {
		this.clockRate = clockRate;
	}

	get started(): boolean {
		return this.#started;
	}

	start(ext: number, atMs: number): void {
		this.#base = ext;
		this.#offsetMs = atMs;
		this.#slew = null;
		this.#started = true;
		this.synced = false;
	}

	toMs(ext: number): number {
		const t = this.#offsetMs + ((ext - this.#base) * 1000) / this.clockRate;
		const s = this.#slew;
		if (!s) return t;
		return t + s.totalMs * Math.min(1, Math.max(0, (ext - s.from) / s.span));
	}

	/** Where `ext` lands once any correction in progress is complete. */
	targetMs(ext: number): number {
		return this.#offsetMs + (this.#slew?.totalMs ?? 0) + ((ext - this.#base) * 1000) / this.clockRate;
	}

	/**
	 * Moves the mapping by `ms`. With `fromExt` (the newest timestamp already
	 * used), a backward move is spread over the timestamps after it.
	 */
	shift(ms: number, fromExt: number | null = null): void {
		const s = this.#slew;
		if (s) {
			// A correction still in progress is finished at once: corrections are rare.
			this.#offsetMs += s.totalMs;
			this.#slew = null;
		}
		if (ms < 0 && -ms <= MAX_SLEW_MS && fromExt !== null) {
			this.#slew = { from: fromExt, span: ((-ms / SLEW_RATE) * this.clockRate) / 1000, totalMs: ms };
			return;
		}
		this.#offsetMs += ms;
	}

	reset(): void {
		this.#started = false;
		this.#slew = null;
		this.synced = false;
	}
}

export type TrackKind = 'video' | 'audio';

/** What a sender report did to the timeline (for logs and tests). */
export type SyncOutcome = 'pending' | 'anchored' | 'aligned' | 'corrected' | 'unchanged' | 'reanchored';

export interface SyncEvent {
	kind: TrackKind;
	outcome: SyncOutcome;
	/** How far the stream's timestamps moved, ms. */
	shiftMs: number;
}

interface PendingSr {
	ntpMs: number;
	rtp32: number;
}

/**
 * A step larger than this when lining a stream up means the reports come from
 * a different clock than the anchor's (the sender restarted elsewhere): the
 * timeline is re-anchored on this stream instead of jumping.
 */
const MAX_ALIGN_STEP_MS = 10_000;

export class SessionTimeline {
	readonly clocks: Record<TrackKind, MediaClock>;
	/** Sender NTP milliseconds at timeline 0; null until the first sender report. */
	#ntpAnchor: number | null = null;
	readonly #driftMs: number;
	readonly #pending: Record<TrackKind, PendingSr | null> = { video: null, audio: null };
	corrections = 0;

	constructor(opts: { videoClockRate: number; audioClockRate: number; driftMs: number }) {
		this.clocks = { video: new MediaClock(opts.videoClockRate), audio: new MediaClock(opts.audioClockRate) };
		this.#driftMs = opts.driftMs;
	}

	get anchored(): boolean {
		return this.#ntpAnchor !== null;
	}

	/**
	 * Starts (or restarts) a stream at its first packet. `arrivalMs` is the
	 * packet's arrival on the timeline; a sender report that came first places
	 * the stream by the sender's clock instead.
	 */
	startTrack(kind: TrackKind, ext: number, arrivalMs: number): SyncEvent | null {
		const clock = this.clocks[kind];
		const pending = this.#pending[kind];
		this.#pending[kind] = null;
		clock.start(ext, arrivalMs);
		if (!pending) return null;
		// Nothing is timed on this stream yet: any correction may step.
		return this.#apply(kind, pending.ntpMs, extendNear(pending.rtp32, ext), null);
	}

	/** Forgets a stream's mapping (its sender changed); the next packet starts it again. */
	resetTrack(kind: TrackKind): void {
		this.clocks[kind].reset();
		this.#pending[kind] = null;
	}

	/**
	 * A sender report for a stream. `refExt` is the stream's latest extended
	 * timestamp (to unwrap the report's, and where a backward correction starts
	 * to be spread), null if it has not started.
	 */
	senderReport(kind: TrackKind, ntpMs: number, rtp32: number, refExt: number | null): SyncEvent {
		const clock = this.clocks[kind];
		if (!clock.started || refExt === null) {
			this.#pending[kind] = { ntpMs, rtp32 };
			return { kind, outcome: 'pending', shiftMs: 0 };
		}
		return this.#apply(kind, ntpMs, extendNear(rtp32, refExt), refExt);
	}

	#apply(kind: TrackKind, ntpMs: number, srExt: number, latestExt: number | null): SyncEvent {
		const clock = this.clocks[kind];
		const current = clock.targetMs(srExt);
		if (this.#ntpAnchor === null) {
			this.#ntpAnchor = ntpMs - current;
			clock.synced = true;
			return { kind, outcome: 'anchored', shiftMs: 0 };
		}
		const error = ntpMs - this.#ntpAnchor - current;
		if (!clock.synced) {
			if (Math.abs(error) > MAX_ALIGN_STEP_MS) {
				this.#ntpAnchor = ntpMs - current;
				for (const c of Object.values(this.clocks)) if (c !== clock) c.synced = false;
				clock.synced = true;
				return { kind, outcome: 'reanchored', shiftMs: 0 };
			}
			clock.shift(error, latestExt);
			clock.synced = true;
			return { kind, outcome: 'aligned', shiftMs: error };
		}
		if (Math.abs(error) > this.#driftMs) {
			clock.shift(error, latestExt);
			this.corrections++;
			return { kind, outcome: 'corrected', shiftMs: error };
		}
		return { kind, outcome: 'unchanged', shiftMs: 0 };
	}
}
