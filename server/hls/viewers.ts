import { createHash } from 'node:crypto';
import { LimitExceeded } from '../common/errors.js';
import type { StreamRegistry } from '../core/stream.js';

interface Seen {
	lastSeen: number;
	release: () => void;
}

export interface HlsViewerTrackerOptions {
	registry: StreamRegistry;
	/** A client not heard from for this long has left. */
	ttlMs: number;
	maxViewersPerStream: number;
	now?: () => number;
}

/**
 * HLS has no sessions: a viewer is a distinct client (address, user agent
 * and token) that fetched the stream's playlist or media recently. Each one
 * is counted on the stream (Stream.addViewer('hls')) while it keeps coming.
 */
export class HlsViewerTracker {
	readonly #opts: HlsViewerTrackerOptions;
	readonly #streams = new Map<string, Map<string, Seen>>();
	readonly #timer: NodeJS.Timeout;
	readonly #now: () => number;

	constructor(opts: HlsViewerTrackerOptions) {
		this.#opts = opts;
		this.#now = opts.now ?? Date.now;
		this.#timer = setInterval(() => this.sweep(), Math.max(1_000, Math.min(5_000, opts.ttlMs / 2)));
		this.#timer.unref();
	}

	static clientKey(remoteAddress: string, userAgent: string, token: string | null): string {
		return createHash('sha256').update(`${remoteAddress}\n${userAgent}\n${token ?? ''}`).digest('base64url').slice(0, 16);
	}

	/** Notes a request; a new client beyond the per-stream limit is refused. */
	touch(stream: string, key: string, remoteAddress: string): void {
		let clients = this.#streams.get(stream);
		const seen = clients?.get(key);
		if (seen) {
			seen.lastSeen = this.#now();
			return;
		}
		const s = this.#opts.registry.get(stream);
		if (!s) return;
		if (s.viewers >= this.#opts.maxViewersPerStream) {
			throw new LimitExceeded(`stream ${stream} already has ${s.viewers} viewers`);
		}
		if (!clients) {
			clients = new Map();
			this.#streams.set(stream, clients);
		}
		clients.set(key, { lastSeen: this.#now(), release: s.addViewer('hls', { id: `hls-${key}`, remoteAddress }) });
	}

	count(stream: string): number {
		return this.#streams.get(stream)?.size ?? 0;
	}

	sweep(): void {
		const cutoff = this.#now() - this.#opts.ttlMs;
		for (const [stream, clients] of this.#streams) {
			for (const [key, seen] of clients) {
				if (seen.lastSeen >= cutoff) continue;
				seen.release();
				clients.delete(key);
			}
			if (clients.size === 0) this.#streams.delete(stream);
		}
	}

	/** Forgets a stream's viewers (its playlist is gone). */
	releaseStream(stream: string): void {
		const clients = this.#streams.get(stream);
		if (!clients) return;
		for (const seen of clients.values()) seen.release();
		this.#streams.delete(stream);
	}

	close(): void {
		clearInterval(this.#timer);
		for (const stream of [...this.#streams.keys()]) this.releaseStream(stream);
	}
}
