import os from 'node:os';
import fs from 'node:fs';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { TypedEmitter } from '../common/emitter.js';
import { ClosedError, Unavailable } from '../common/errors.js';
import type { Logger } from '../common/logger.js';

export type Worker = types.Worker;
export type WebRtcServer = types.WebRtcServer;

export interface WorkerPoolOptions {
	/** Workers to run; 0 means one per CPU core. */
	numWorkers: number;
	/** WebRTC port of worker 0; worker i uses basePort + i. 0: any free port. */
	basePort: number;
	listenIp: string;
	/** Address put in ICE candidates; null picks a local one. */
	announcedIp: string | null;
	logLevel: types.WorkerLogLevel;
	/** Port range for plain (ingest) transports; 0/0 means the OS default range. */
	plainPortMin: number;
	plainPortMax: number;
	logger: Logger;
}

/** One worker of the pool, with its WebRtcServer and a load count. */
export interface WorkerSlot {
	readonly index: number;
	readonly worker: Worker;
	readonly webRtcServer: WebRtcServer;
	readonly udpPort: number;
	readonly tcpPort: number;
	/** Weight of what runs on this worker (viewers, routers); kept by users. */
	load: number;
}

export interface WorkerPoolEvents extends Record<string, unknown[]> {
	/** A worker died; everything on it is gone. Its replacement follows. */
	workerDied: [index: number, error: Error];
	/** A fresh worker took the dead one's place. */
	workerReplaced: [slot: WorkerSlot];
	close: [];
}

/** The address browsers on this host or LAN can reach when none is configured. */
export function defaultAnnouncedIp(): string {
	for (const addrs of Object.values(os.networkInterfaces())) {
		for (const a of addrs ?? []) {
			if (a.family === 'IPv4' && !a.internal) return a.address;
		}
	}
	return '127.0.0.1';
}

/** Fails early and clearly when the worker binary was never provisioned. */
export function assertWorkerBinary(): void {
	const bin = mediasoup.workerBin;
	if (!fs.existsSync(bin)) {
		throw new Unavailable(
			`the mediasoup worker binary is missing (${bin}); run \`npm install\` (or \`npm run provision-worker\`) to build or fetch it`,
		);
	}
}

/**
 * A pool of mediasoup workers, one WebRtcServer each on its own port. A
 * worker that dies is logged and replaced on the same port.
 */
export class WorkerPool extends TypedEmitter<WorkerPoolEvents> {
	readonly announcedIp: string;
	readonly #opts: WorkerPoolOptions;
	readonly #logger: Logger;
	readonly #slots: WorkerSlot[] = [];
	#closed = false;

	private constructor(opts: WorkerPoolOptions) {
		super();
		this.#opts = opts;
		this.#logger = opts.logger.child({ component: 'sfu' });
		this.announcedIp = opts.announcedIp ?? defaultAnnouncedIp();
		this.setListenerErrorLogger(this.#logger);
	}

	static async create(opts: WorkerPoolOptions): Promise<WorkerPool> {
		assertWorkerBinary();
		const pool = new WorkerPool(opts);
		const n = opts.numWorkers > 0 ? opts.numWorkers : Math.max(1, os.availableParallelism());
		try {
			for (let i = 0; i < n; i++) pool.#slots.push(await pool.#startSlot(i));
		} catch (err) {
			pool.close();
			throw err;
		}
		pool.#logger.info(
			{ workers: n, ports: pool.#slots.map((s) => ({ udp: s.udpPort, tcp: s.tcpPort })), announcedIp: pool.announcedIp },
			'mediasoup workers ready',
		);
		return pool;
	}

	async #startSlot(index: number): Promise<WorkerSlot> {
		const o = this.#opts;
		const worker = await mediasoup.createWorker({
			logLevel: o.logLevel,
			...(o.plainPortMin > 0 && o.plainPortMax >= o.plainPortMin ? { rtcMinPort: o.plainPortMin, rtcMaxPort: o.plainPortMax } : {}),
			appData: { index },
		});
		let webRtcServer: WebRtcServer;
		try {
			const port = o.basePort === 0 ? 0 : o.basePort + index;
			webRtcServer = await worker.createWebRtcServer({
				listenInfos: [
					{ protocol: 'udp', ip: o.listenIp, announcedIp: this.announcedIp, port },
					{ protocol: 'tcp', ip: o.listenIp, announcedIp: this.announcedIp, port },
				],
			});
		} catch (err) {
			worker.close();
			throw new Unavailable(
				`cannot listen for WebRTC on ${o.listenIp}:${o.basePort === 0 ? 'any port' : o.basePort + index} (worker ${index}): ${(err as Error).message}`,
				{ cause: err },
			);
		}
		const dump = (await webRtcServer.dump()) as unknown as {
			udpSockets: { port: number }[];
			tcpServers: { port: number }[];
		};
		const slot: WorkerSlot = {
			index,
			worker,
			webRtcServer,
			udpPort: dump.udpSockets[0]?.port ?? 0,
			tcpPort: dump.tcpServers[0]?.port ?? 0,
			load: 0,
		};
		worker.on('died', (error) => this.#onDied(slot, error));
		return slot;
	}

	#onDied(slot: WorkerSlot, error: Error): void {
		if (this.#closed) return;
		this.#logger.error({ err: error, worker: slot.index, pid: slot.worker.pid }, 'mediasoup worker died; replacing it');
		this.emit('workerDied', slot.index, error);
		const retry = (attempt: number): void => {
			if (this.#closed) return;
			this.#startSlot(slot.index).then(
				(fresh) => {
					if (this.#closed) {
						fresh.worker.close();
						return;
					}
					this.#slots[slot.index] = fresh;
					this.#logger.info({ worker: slot.index, pid: fresh.worker.pid }, 'mediasoup worker replaced');
					this.emit('workerReplaced', fresh);
				},
				(err: unknown) => {
					const delay = Math.min(10_000, 250 * 2 ** attempt);
					this.#logger.error({ err, worker: slot.index, delay }, 'cannot replace mediasoup worker; retrying');
					setTimeout(() => retry(attempt + 1), delay).unref();
				},
			);
		};
		retry(0);
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** Live workers (a dead one is absent until replaced). */
	get slots(): readonly WorkerSlot[] {
		return this.#slots.filter((s) => !s.worker.died && !s.worker.closed);
	}

	/** The worker with the least load, optionally not one of `exclude`. */
	leastLoaded(exclude: ReadonlySet<number> = new Set()): WorkerSlot {
		if (this.#closed) throw new ClosedError('worker pool');
		let best: WorkerSlot | undefined;
		for (const s of this.slots) {
			if (exclude.has(s.index)) continue;
			if (!best || s.load < best.load) best = s;
		}
		if (!best) throw new Unavailable('no mediasoup worker is available');
		return best;
	}

	slot(index: number): WorkerSlot | undefined {
		return this.slots.find((s) => s.index === index);
	}

	/** Ports in use, for /api/info and logs. */
	ports(): { worker: number; udp: number; tcp: number }[] {
		return this.#slots.map((s) => ({ worker: s.index, udp: s.udpPort, tcp: s.tcpPort }));
	}

	async resourceUsage(): Promise<{ worker: number; pid: number; usage: types.WorkerResourceUsage }[]> {
		return Promise.all(
			this.slots.map(async (s) => ({ worker: s.index, pid: s.worker.pid, usage: await s.worker.getResourceUsage() })),
		);
	}

	/** Closes every worker (and so every router and transport). Idempotent. */
	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		for (const s of this.#slots) s.worker.close();
		this.#slots.length = 0;
		this.emit('close');
		this.removeAllListeners();
	}
}
