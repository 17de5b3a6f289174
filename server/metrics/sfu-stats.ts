import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import type { Logger } from '../common/logger.js';
import type { WorkerPool } from '../sfu/worker-pool.js';

/** Which side of the SFU an RTP stream is on: publisher -> SFU, or SFU -> viewer. */
export type RtpDirection = 'ingest' | 'egress';
export type MediaKind = 'audio' | 'video';

/** Where the collector puts what it measured; the Metrics class implements it. */
export interface SfuStatsSink {
	egressBytes(stream: string, n: number): void;
	packetsLost(direction: RtpDirection, kind: MediaKind, n: number): void;
	retransmitted(direction: RtpDirection, kind: MediaKind, n: number): void;
	nacks(direction: RtpDirection, kind: MediaKind, n: number): void;
	keyframeRequests(direction: RtpDirection, type: 'pli' | 'fir', n: number): void;
}

export interface SfuObjectCounts {
	routers: number;
	webrtc_transports: number;
	plain_transports: number;
	pipe_transports: number;
	direct_transports: number;
	producers: number;
	consumers: number;
}

export interface SfuPollResult {
	/** Objects whose stats were read in this poll. */
	polled: number;
	/** Objects that have stats to read. */
	total: number;
	durationMs: number;
}

type EntityKind = 'viewerTransport' | 'egressConsumer' | 'ingestProducer';

interface Entity {
	readonly kind: EntityKind;
	readonly stream: string;
	readonly mediaKind: MediaKind;
	readonly getStats: () => Promise<unknown[]>;
	/** Cumulative values seen at the previous poll, by field. */
	readonly last: Map<string, number>;
}

// At most this many getStats requests in flight: enough to hide the IPC round
// trip, few enough that a scrape never floods a busy worker's channel.
const CONCURRENCY = 16;

function streamOf(router: types.Router): string {
	const s = (router.appData as { stream?: unknown }).stream;
	return typeof s === 'string' ? s : 'unknown';
}

function num(v: unknown): number {
	return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/**
 * mediasoup statistics for /metrics. Every router, transport, producer and
 * consumer of the pool's workers is followed through mediasoup's observer
 * events, so no component has to report its objects. getStats() is an IPC
 * round trip per object, so a poll has a time budget and continues where the
 * previous one stopped (round robin): with thousands of viewers each scrape
 * stays cheap and every object is still read every few scrapes. Counters
 * receive the growth of mediasoup's cumulative values; what an object counted
 * between its last poll and its close is not seen.
 */
export class SfuStats {
	readonly #pool: WorkerPool;
	readonly #sink: SfuStatsSink;
	readonly #logger: Logger;
	readonly #entities = new Map<string, Entity>();
	readonly #counts: SfuObjectCounts = {
		routers: 0,
		webrtc_transports: 0,
		plain_transports: 0,
		pipe_transports: 0,
		direct_transports: 0,
		producers: 0,
		consumers: 0,
	};
	readonly #workers = new Set<types.Worker>();
	readonly #onNewRouter = (router: types.Router): void => this.#router(router);
	readonly #onWorkerReplaced = (slot: { worker: types.Worker }): void => this.#attach(slot.worker);
	#cursor = 0;
	#closed = false;

	constructor(pool: WorkerPool, sink: SfuStatsSink, logger: Logger) {
		this.#pool = pool;
		this.#sink = sink;
		this.#logger = logger;
		for (const slot of pool.slots) this.#attach(slot.worker);
		pool.on('workerReplaced', this.#onWorkerReplaced);
	}

	/** Live mediasoup objects by type (a leak shows here first). */
	counts(): Readonly<SfuObjectCounts> {
		return this.#counts;
	}

	#attach(worker: types.Worker): void {
		if (this.#closed || this.#workers.has(worker)) return;
		this.#workers.add(worker);
		worker.observer.on('newrouter', this.#onNewRouter);
		worker.observer.once('close', () => {
			worker.observer.off('newrouter', this.#onNewRouter);
			this.#workers.delete(worker);
		});
	}

	#router(router: types.Router): void {
		if (this.#closed) return;
		this.#counts.routers++;
		router.observer.once('close', () => this.#counts.routers--);
		const stream = streamOf(router);
		router.observer.on('newtransport', (t) => this.#transport(t, stream));
	}

	#transport(transport: types.Transport, stream: string): void {
		if (this.#closed) return;
		const type =
			transport instanceof mediasoup.types.WebRtcTransport
				? 'webrtc_transports'
				: transport instanceof mediasoup.types.PlainTransport
					? 'plain_transports'
					: transport instanceof mediasoup.types.PipeTransport
						? 'pipe_transports'
						: 'direct_transports';
		this.#counts[type]++;
		// Pipe transports only link our own routers: their traffic is internal.
		const internal = type === 'pipe_transports';
		if (type === 'webrtc_transports') {
			this.#track(transport.id, {
				kind: 'viewerTransport',
				stream,
				mediaKind: 'video',
				getStats: () => transport.getStats() as Promise<unknown[]>,
				last: new Map(),
			});
		}
		transport.observer.once('close', () => {
			this.#counts[type]--;
			this.#entities.delete(transport.id);
		});
		transport.observer.on('newproducer', (p) => {
			this.#counts.producers++;
			if (!internal) {
				this.#track(p.id, {
					kind: 'ingestProducer',
					stream,
					mediaKind: p.kind,
					getStats: () => p.getStats(),
					last: new Map(),
				});
			}
			p.observer.once('close', () => {
				this.#counts.producers--;
				this.#entities.delete(p.id);
			});
		});
		transport.observer.on('newconsumer', (c) => {
			this.#counts.consumers++;
			if (!internal && c.type !== 'pipe') {
				this.#track(c.id, {
					kind: 'egressConsumer',
					stream,
					mediaKind: c.kind,
					getStats: () => c.getStats(),
					last: new Map(),
				});
			}
			c.observer.once('close', () => {
				this.#counts.consumers--;
				this.#entities.delete(c.id);
			});
		});
	}

	#track(id: string, e: Entity): void {
		this.#entities.set(id, e);
	}

	/** Adds what `field` grew by since the last poll of this entity (never negative). */
	#delta(e: Entity, field: string, value: number): number {
		const prev = e.last.get(field) ?? 0;
		e.last.set(field, value);
		// Receiver-reported loss may shrink (duplicates); a counter must not.
		return value > prev ? value - prev : 0;
	}

	#account(e: Entity, stats: unknown[]): void {
		const s = this.#sink;
		if (e.kind === 'viewerTransport') {
			const t = stats.find((x) => (x as { type?: unknown }).type === 'webrtc-transport') as Record<string, unknown> | undefined;
			if (t) s.egressBytes(e.stream, this.#delta(e, 'bytesSent', num(t.bytesSent)));
			return;
		}
		// A consumer's own stream is 'outbound-rtp'; a producer's is 'inbound-rtp'.
		const wanted = e.kind === 'egressConsumer' ? 'outbound-rtp' : 'inbound-rtp';
		const direction: RtpDirection = e.kind === 'egressConsumer' ? 'egress' : 'ingest';
		let lost = 0;
		let retx = 0;
		let nack = 0;
		let pli = 0;
		let fir = 0;
		for (const x of stats as Record<string, unknown>[]) {
			if (x.type !== wanted) continue;
			// Simulcast producers have one entry per encoding; sum them.
			lost += num(x.packetsLost);
			retx += num(x.packetsRetransmitted);
			nack += num(x.nackCount);
			pli += num(x.pliCount);
			fir += num(x.firCount);
		}
		s.packetsLost(direction, e.mediaKind, this.#delta(e, 'lost', lost));
		s.retransmitted(direction, e.mediaKind, this.#delta(e, 'retx', retx));
		s.nacks(direction, e.mediaKind, this.#delta(e, 'nack', nack));
		s.keyframeRequests(direction, 'pli', this.#delta(e, 'pli', pli));
		s.keyframeRequests(direction, 'fir', this.#delta(e, 'fir', fir));
	}

	/**
	 * Reads stats of as many objects as fit in `budgetMs`, starting where the
	 * previous poll stopped. Requests still in flight at the deadline are
	 * awaited for at most another budget, then abandoned.
	 */
	async poll(budgetMs: number): Promise<SfuPollResult> {
		const started = performance.now();
		const ids = [...this.#entities.keys()];
		const total = ids.length;
		if (this.#closed || total === 0) return { polled: 0, total, durationMs: 0 };
		const deadline = started + budgetMs;
		let next = 0;
		let polled = 0;
		const start = this.#cursor % total;
		const worker = async (): Promise<void> => {
			while (next < total && performance.now() < deadline) {
				const id = ids[(start + next) % total];
				next++;
				const e = id === undefined ? undefined : this.#entities.get(id);
				if (!e) continue;
				try {
					const stats = await e.getStats();
					polled++;
					if (this.#entities.get(id ?? '') === e) this.#account(e, stats);
				} catch (err) {
					// Closed between listing and asking: its close event removes it.
					this.#logger.trace({ err, id }, 'getStats failed');
				}
			}
		};
		const all = Promise.all(Array.from({ length: Math.min(CONCURRENCY, total) }, worker));
		let timer: NodeJS.Timeout | undefined;
		const overtime = new Promise<void>((resolve) => {
			timer = setTimeout(resolve, budgetMs * 2);
		});
		await Promise.race([all, overtime]);
		clearTimeout(timer);
		this.#cursor = (start + next) % total;
		return { polled, total, durationMs: performance.now() - started };
	}

	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		this.#pool.off('workerReplaced', this.#onWorkerReplaced);
		for (const w of this.#workers) w.observer.off('newrouter', this.#onNewRouter);
		this.#workers.clear();
		this.#entities.clear();
	}
}
