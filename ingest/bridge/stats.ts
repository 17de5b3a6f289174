/** Upper bounds (ms) of the delay histogram buckets; the last bucket is open. */
export const DELAY_BUCKETS_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000] as const;

export interface DelaySnapshot {
	count: number;
	/** Over the most recent samples (the reservoir). */
	p50: number | null;
	p95: number | null;
	p99: number | null;
	max: number | null;
	mean: number | null;
	/** Cumulative counts per bucket since creation, for a Prometheus histogram. */
	buckets: { le: number; count: number }[];
	sum: number;
}

/**
 * Delay samples of one stream: a cumulative histogram for metrics and a ring
 * of the most recent samples for percentiles. Constant memory, O(1) record.
 */
export class DelayStats {
	readonly #recent: Float64Array;
	readonly #bucketCounts = new Float64Array(DELAY_BUCKETS_MS.length + 1);
	#next = 0;
	#filled = 0;
	#count = 0;
	#sum = 0;

	constructor(reservoir = 1024) {
		this.#recent = new Float64Array(reservoir);
	}

	get count(): number {
		return this.#count;
	}

	record(ms: number): void {
		if (!Number.isFinite(ms)) return;
		const v = Math.max(0, ms);
		this.#recent[this.#next] = v;
		this.#next = (this.#next + 1) % this.#recent.length;
		if (this.#filled < this.#recent.length) this.#filled++;
		this.#count++;
		this.#sum += v;
		let b = 0;
		while (b < DELAY_BUCKETS_MS.length && v > (DELAY_BUCKETS_MS[b] as number)) b++;
		this.#bucketCounts[b] = (this.#bucketCounts[b] ?? 0) + 1;
	}

	snapshot(): DelaySnapshot {
		const n = this.#filled;
		const sorted = Array.from(this.#recent.subarray(0, n)).sort((a, b) => a - b);
		const q = (p: number): number | null => (n === 0 ? null : round((sorted[Math.min(n - 1, Math.floor(p * n))] as number)));
		let cum = 0;
		const buckets: { le: number; count: number }[] = DELAY_BUCKETS_MS.map((le, i) => {
			cum += this.#bucketCounts[i] ?? 0;
			return { le, count: cum };
		});
		buckets.push({ le: Infinity, count: this.#count });
		return {
			count: this.#count,
			p50: q(0.5),
			p95: q(0.95),
			p99: q(0.99),
			max: n === 0 ? null : round(sorted[n - 1] as number),
			mean: n === 0 ? null : round(sorted.reduce((a, b) => a + b, 0) / n),
			buckets,
			sum: this.#sum,
		};
	}
}

function round(v: number): number {
	return Math.round(v * 1000) / 1000;
}
