/**
 * A token bucket: `ratePerSec` tokens a second, holding at most `burst`. One
 * token per request; an empty bucket means the request is refused, not queued.
 */
export class TokenBucket {
	readonly #rate: number;
	readonly #burst: number;
	readonly #now: () => number;
	#tokens: number;
	#last: number;

	constructor(ratePerSec: number, burst: number, now: () => number = () => performance.now()) {
		this.#rate = ratePerSec;
		this.#burst = burst;
		this.#now = now;
		this.#tokens = burst;
		this.#last = now();
	}

	take(): boolean {
		const t = this.#now();
		this.#tokens = Math.min(this.#burst, this.#tokens + ((t - this.#last) / 1000) * this.#rate);
		this.#last = t;
		if (this.#tokens < 1) return false;
		this.#tokens -= 1;
		return true;
	}
}
