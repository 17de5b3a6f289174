/** Order statistics of a sample, in the sample's unit. */
export interface Summary {
	n: number;
	min: number;
	p50: number;
	p95: number;
	p99: number;
	max: number;
	mean: number;
}

export function percentile(sorted: readonly number[], p: number): number {
	if (sorted.length === 0) return Number.NaN;
	const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
	return sorted[i] ?? Number.NaN;
}

export function summarize(values: readonly number[]): Summary {
	const s = [...values].filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
	const mean = s.length ? s.reduce((a, b) => a + b, 0) / s.length : Number.NaN;
	return {
		n: s.length,
		min: s[0] ?? Number.NaN,
		p50: percentile(s, 50),
		p95: percentile(s, 95),
		p99: percentile(s, 99),
		max: s.at(-1) ?? Number.NaN,
		mean,
	};
}

/**
 * Frames the encoder got but the viewer never showed, between the first and
 * the last frame the viewer did show (frames the probe itself skipped because
 * the encoder was behind are not counted: they were never sent).
 */
export function framesLost(sent: readonly number[], shown: readonly number[]): { lost: number; of: number } {
	if (shown.length === 0) return { lost: 0, of: 0 };
	const seen = new Set(shown);
	const lo = Math.min(...shown);
	const hi = Math.max(...shown);
	let of = 0;
	let lost = 0;
	for (const seq of sent) {
		if (seq < lo || seq > hi) continue;
		of++;
		if (!seen.has(seq)) lost++;
	}
	return { lost, of };
}

export const round = (v: number, digits = 0): number => (Number.isFinite(v) ? Number(v.toFixed(digits)) : Number.NaN);
