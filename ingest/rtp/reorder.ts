/**
 * Puts RTP packets back in sequence order with as little delay as possible.
 * A packet that arrives in order is delivered at once; packets behind a gap
 * are held until the gap fills, until the oldest has waited `windowMs`, or
 * until `maxPackets` are held, whichever comes first; then the gap is
 * declared lost and delivery moves on. Sequence jumps far outside the window
 * (RFC 3550 A.1: a sender restarted, or a stray packet) are only believed when
 * the next packet continues them.
 */

/** RFC 3550 A.1: a jump this far forward is a restart or garbage, not loss. */
const MAX_DROPOUT = 3000;
/** RFC 3550 A.1: this far backward is a restart or garbage, not a late packet. */
const MAX_MISORDER = 100;

export interface ReorderStats {
	/** Packets delivered in order. */
	delivered: number;
	/** Packets that arrived after a later one but in time to be delivered in order. */
	reordered: number;
	/** Packets declared lost (never arrived within the window). */
	lost: number;
	/** Duplicates, and packets that arrived after their gap was declared lost. */
	late: number;
	/** Packets far outside the sequence window, dropped unless the next one confirmed a restart. */
	outOfRange: number;
	/** Sequence restarts accepted. */
	resyncs: number;
}

export interface ReorderHandlers<T> {
	deliver: (item: T, extSeq: number) => void;
	/** `count` packets before extSeq `before` will never come. */
	loss: (count: number, before: number) => void;
	/** The sequence restarted: the sender (or its numbering) changed. Called before the first packet of the new run. */
	resync: () => void;
}

export interface ReorderOptions {
	windowMs: number;
	maxPackets: number;
	now?: () => number;
	/** Schedules expire(); injectable so tests can drive time by hand. */
	setTimer?: (fn: () => void, ms: number) => unknown;
	clearTimer?: (handle: unknown) => void;
}

interface Held<T> {
	item: T;
	arrivedAt: number;
}

export class ReorderBuffer<T> {
	readonly stats: ReorderStats = { delivered: 0, reordered: 0, lost: 0, late: 0, outOfRange: 0, resyncs: 0 };
	readonly #handlers: ReorderHandlers<T>;
	readonly #windowMs: number;
	readonly #maxPackets: number;
	readonly #now: () => number;
	readonly #setTimer: (fn: () => void, ms: number) => unknown;
	readonly #clearTimer: (handle: unknown) => void;
	/** Extended sequence number of the next packet to deliver; null before the first. */
	#expected: number | null = null;
	/** The highest extended sequence number seen (for receiver reports). */
	#highest = -1;
	#baseSeq = 0;
	readonly #held = new Map<number, Held<T>>();
	#timer: unknown = null;
	#probation: { next: number; item: T } | null = null;
	#closed = false;

	constructor(handlers: ReorderHandlers<T>, opts: ReorderOptions) {
		this.#handlers = handlers;
		this.#windowMs = opts.windowMs;
		this.#maxPackets = Math.max(1, opts.maxPackets);
		this.#now = opts.now ?? (() => performance.now());
		this.#setTimer = opts.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
		this.#clearTimer = opts.clearTimer ?? ((h) => clearTimeout(h as NodeJS.Timeout));
	}

	/** Extended highest sequence number seen, or -1. */
	get highestSeq(): number {
		return this.#highest;
	}

	/** First extended sequence number of the current run, for expected-packet counts. */
	get baseSeq(): number {
		return this.#baseSeq;
	}

	get heldCount(): number {
		return this.#held.size;
	}

	push(seq16: number, item: T): void {
		if (this.#closed) return;
		seq16 &= 0xffff;
		if (this.#expected === null) {
			this.#start(seq16);
			this.#deliver(item, this.#expected ?? 0);
			return;
		}
		const expected = this.#expected;
		const delta = ((seq16 - (expected & 0xffff) + 0x18000) & 0xffff) - 0x8000;
		const ext = expected + delta;
		if (delta > MAX_DROPOUT || delta < -MAX_MISORDER) {
			this.#suspicious(seq16, item);
			return;
		}
		this.#probation = null;
		if (delta < 0) {
			this.stats.late++;
			return;
		}
		if (delta === 0) {
			if (this.#held.size > 0) this.stats.reordered++;
			this.#deliver(item, ext);
			this.#drain();
			if (this.#held.size === 0) this.#cancelTimer();
			return;
		}
		if (this.#held.has(ext)) {
			this.stats.late++;
			return;
		}
		this.#held.set(ext, { item, arrivedAt: this.#now() });
		if (ext > this.#highest) this.#highest = ext;
		if (this.#windowMs === 0) {
			this.#skipGap();
		} else {
			while (this.#held.size > this.#maxPackets) this.#skipGap();
		}
		this.#schedule();
	}

	/** Declares overdue gaps lost and delivers what waited behind them. */
	expire(): void {
		this.#timer = null;
		if (this.#closed) return;
		const now = this.#now();
		while (this.#held.size > 0 && now - this.#oldestArrival() >= this.#windowMs) this.#skipGap();
		this.#schedule();
	}

	/** Forgets everything: the next packet starts a new run (source switch). */
	reset(): void {
		this.#cancelTimer();
		this.#held.clear();
		this.#expected = null;
		this.#probation = null;
	}

	close(): void {
		this.#closed = true;
		this.reset();
	}

	#start(seq16: number): void {
		// Extended numbers start one cycle up so a late packet just before the
		// first never makes them negative.
		this.#expected = 0x10000 + seq16;
		this.#baseSeq = this.#expected;
		this.#highest = this.#expected;
	}

	#suspicious(seq16: number, item: T): void {
		const p = this.#probation;
		if (p && p.next === seq16) {
			// Two packets in a row agree: the sender really restarted its numbering.
			this.stats.resyncs++;
			this.#flushAll();
			this.#probation = null;
			this.#handlers.resync();
			const first = (seq16 - 1) & 0xffff;
			this.#start(first);
			this.#deliver(p.item, this.#expected ?? 0);
			this.#deliver(item, this.#expected ?? 0);
			return;
		}
		this.stats.outOfRange++;
		this.#probation = { next: (seq16 + 1) & 0xffff, item };
	}

	#deliver(item: T, ext: number): void {
		this.#expected = ext + 1;
		if (ext > this.#highest) this.#highest = ext;
		this.stats.delivered++;
		this.#handlers.deliver(item, ext);
	}

	#drain(): void {
		for (;;) {
			const next = this.#expected ?? 0;
			const h = this.#held.get(next);
			if (!h) return;
			this.#held.delete(next);
			this.#deliver(h.item, next);
		}
	}

	/** Gives up on the first gap: counts it lost and delivers the run after it. */
	#skipGap(): void {
		if (this.#held.size === 0 || this.#expected === null) return;
		let first = Infinity;
		for (const k of this.#held.keys()) if (k < first) first = k;
		const missing = first - this.#expected;
		if (missing > 0) {
			this.stats.lost += missing;
			this.#handlers.loss(missing, first);
		}
		this.#expected = first;
		this.#drain();
	}

	#flushAll(): void {
		while (this.#held.size > 0) this.#skipGap();
		this.#cancelTimer();
	}

	#oldestArrival(): number {
		let oldest = Infinity;
		for (const h of this.#held.values()) if (h.arrivedAt < oldest) oldest = h.arrivedAt;
		return oldest;
	}

	#schedule(): void {
		if (this.#held.size === 0) {
			this.#cancelTimer();
			return;
		}
		if (this.#timer !== null) return;
		const wait = Math.max(0, this.#windowMs - (this.#now() - this.#oldestArrival()));
		this.#timer = this.#setTimer(() => this.expire(), Math.ceil(wait));
	}

	#cancelTimer(): void {
		if (this.#timer !== null) this.#clearTimer(this.#timer);
		this.#timer = null;
	}
}
