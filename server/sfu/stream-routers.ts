import type { types } from 'mediasoup';
import { TypedEmitter } from '../common/emitter.js';
import { ClosedError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { MEDIA_CODECS } from './codecs.js';
import type { WorkerPool, WorkerSlot } from './worker-pool.js';

export type Router = types.Router;
export type Producer = types.Producer;

/** A router of one stream on one worker. */
export interface StreamRouter {
	readonly stream: string;
	readonly router: Router;
	readonly slot: WorkerSlot;
	/** The router the ingest feeds; the others get its producers piped in. */
	readonly origin: boolean;
}

export interface StreamRoutersEvents extends Record<string, unknown[]> {
	/** The stream's producers are ready to consume (first time or replaced). */
	ready: [stream: string, producers: readonly Producer[]];
	/** The stream's producers are gone (publisher stopped, taken over, worker died). */
	gone: [stream: string, reason: string];
	/** A router of the stream died with its worker; its transports are gone. */
	routerLost: [stream: string, workerIndex: number, origin: boolean];
}

interface Entry {
	stream: string;
	/** Worker index -> router, origin included. */
	routers: Map<number, Promise<StreamRouter>>;
	originIndex: number | null;
	producers: Producer[];
	/** Worker index -> piping of the current producers into that router. */
	piped: Map<number, Promise<void>>;
}

/**
 * The routers of every stream across the worker pool. The ingest bridge feeds
 * the origin router; viewers are spread over the workers, each worker's router
 * getting the producers through pipeToRouter, so a popular stream uses every
 * core. Routers live as long as the stream has a publisher or viewers, so
 * viewer transports survive a publisher's restart; producers come and go.
 */
export class StreamRouters extends TypedEmitter<StreamRoutersEvents> {
	readonly #pool: WorkerPool;
	readonly #logger: Logger;
	readonly #entries = new Map<string, Entry>();
	#closed = false;

	constructor(pool: WorkerPool, logger: Logger) {
		super();
		this.#pool = pool;
		this.#logger = logger.child({ component: 'routers' });
		this.setListenerErrorLogger(this.#logger);
		pool.on('workerDied', (index) => this.#onWorkerDied(index));
	}

	#entry(stream: string): Entry {
		if (this.#closed) throw new ClosedError('stream routers');
		let e = this.#entries.get(stream);
		if (!e) {
			e = { stream, routers: new Map(), originIndex: null, producers: [], piped: new Map() };
			this.#entries.set(stream, e);
		}
		return e;
	}

	#routerOn(e: Entry, slot: WorkerSlot, origin: boolean): Promise<StreamRouter> {
		const existing = e.routers.get(slot.index);
		if (existing) return existing;
		const p = slot.worker.createRouter({ mediaCodecs: MEDIA_CODECS, appData: { stream: e.stream } }).then(
			(router): StreamRouter => {
				slot.load += 1;
				router.observer.once('close', () => {
					slot.load -= 1;
				});
				return { stream: e.stream, router, slot, origin };
			},
		);
		e.routers.set(slot.index, p);
		// A failed creation must not poison the map for the next caller.
		p.catch(() => {
			if (e.routers.get(slot.index) === p) e.routers.delete(slot.index);
		});
		return p;
	}

	/** The router the ingest publishes into, created on the least-loaded worker. */
	async origin(stream: string): Promise<StreamRouter> {
		const e = this.#entry(stream);
		if (e.originIndex !== null) {
			const r = e.routers.get(e.originIndex);
			if (r) return r;
		}
		// An existing viewer router can serve as origin: nothing to pipe then.
		const slot =
			e.routers.size > 0
				? (this.#pool.slot([...e.routers.keys()][0] ?? -1) ?? this.#pool.leastLoaded())
				: this.#pool.leastLoaded();
		e.originIndex = slot.index;
		return this.#routerOn(e, slot, true);
	}

	/**
	 * A router for a new viewer: on the least-loaded worker, with the stream's
	 * current producers piped in. Works for offline streams too; producers
	 * appear when the stream goes live.
	 */
	async viewerRouter(stream: string): Promise<StreamRouter> {
		const e = this.#entry(stream);
		const slot = this.#pool.leastLoaded();
		const sr = await this.#routerOn(e, slot, e.originIndex === slot.index);
		await this.#ensurePiped(e, slot.index);
		return sr;
	}

	/** Producers consumable on `router` (originals or their pipe copies). */
	producerIds(stream: string): string[] {
		return this.#entries.get(stream)?.producers.map((p) => p.id) ?? [];
	}

	producers(stream: string): readonly Producer[] {
		return this.#entries.get(stream)?.producers ?? [];
	}

	/** Called by the bridge when a stream's producers are created on its origin router. */
	async setProducers(stream: string, producers: Producer[]): Promise<void> {
		const e = this.#entry(stream);
		e.producers = producers;
		e.piped.clear();
		for (const p of producers) {
			p.observer.once('close', () => {
				const i = e.producers.indexOf(p);
				if (i !== -1) e.producers.splice(i, 1);
			});
		}
		await Promise.all([...e.routers.keys()].map((idx) => this.#ensurePiped(e, idx)));
		this.emit('ready', stream, producers);
	}

	/** Called by the bridge when the stream's producers are closed. */
	clearProducers(stream: string, reason: string): void {
		const e = this.#entries.get(stream);
		if (!e) return;
		const had = e.producers.length > 0;
		for (const p of e.producers) if (!p.closed) p.close();
		e.producers = [];
		e.piped.clear();
		if (had) this.emit('gone', stream, reason);
	}

	#ensurePiped(e: Entry, index: number): Promise<void> {
		if (index === e.originIndex || e.producers.length === 0) return Promise.resolve();
		let p = e.piped.get(index);
		if (!p) {
			const producers = e.producers;
			p = (async (): Promise<void> => {
				const origin = e.originIndex === null ? undefined : await e.routers.get(e.originIndex);
				const target = await e.routers.get(index);
				if (!origin || !target) return;
				for (const producer of producers) {
					if (producer.closed) continue;
					await origin.router.pipeToRouter({ producerId: producer.id, router: target.router });
				}
			})();
			e.piped.set(index, p);
			p.catch((err: unknown) => {
				this.#logger.warn({ err, stream: e.stream, worker: index }, 'pipeToRouter failed');
				if (e.piped.get(index) === p) e.piped.delete(index);
			});
		}
		return p;
	}

	/** Routers of the stream, for stats. */
	async routers(stream: string): Promise<StreamRouter[]> {
		const e = this.#entries.get(stream);
		if (!e) return [];
		const settled = await Promise.allSettled(e.routers.values());
		return settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
	}

	/** Closes every router of the stream (no publisher and no viewers left). */
	async closeStream(stream: string): Promise<void> {
		const e = this.#entries.get(stream);
		if (!e) return;
		this.#entries.delete(stream);
		const settled = await Promise.allSettled(e.routers.values());
		for (const s of settled) if (s.status === 'fulfilled') s.value.router.close();
	}

	#onWorkerDied(index: number): void {
		for (const e of this.#entries.values()) {
			if (!e.routers.has(index)) continue;
			e.routers.delete(index);
			e.piped.delete(index);
			const wasOrigin = e.originIndex === index;
			if (wasOrigin) {
				e.originIndex = null;
				e.producers = [];
				e.piped.clear();
				this.emit('gone', e.stream, 'mediasoup worker died');
			}
			this.emit('routerLost', e.stream, index, wasOrigin);
		}
	}

	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		for (const stream of [...this.#entries.keys()]) void this.closeStream(stream);
		this.removeAllListeners();
	}
}
