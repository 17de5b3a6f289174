import fs from 'node:fs/promises';
import path from 'node:path';
import { TypedEmitter } from '../common/emitter.js';
import { ClosedError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { BoundedQueue } from '../common/queue.js';
import { isValidStreamName } from '../core/stream.js';
import { isStoredFileName } from './names.js';

export interface HlsDiskStoreOptions {
	dir: string;
	/** Bytes of segments across all streams before the oldest are deleted. */
	maxBytes: number;
	logger: Logger;
	/** Writes waiting for the disk; the oldest are dropped beyond this. */
	queueCapacity?: number;
}

export type StoredKind = 'init' | 'segment';

export interface HlsDiskStoreEvents extends Record<string, unknown[]> {
	/** A segment was deleted to keep the folder under maxBytes. */
	evicted: [stream: string, name: string];
	close: [];
}

export interface HlsDiskStoreStats {
	files: number;
	bytes: number;
	written: number;
	/** Writes dropped because the disk fell behind. */
	dropped: number;
	evicted: number;
	errors: number;
}

interface Entry {
	stream: string;
	name: string;
	kind: StoredKind;
	bytes: number;
	state: 'queued' | 'writing' | 'stored';
	/** Removed while queued or being written: unlink once the write is done. */
	removed: boolean;
}

interface Job {
	entry: Entry;
	data: Buffer[];
}

/**
 * The HLS folder: config.hls.dir/<stream>/<file>. Writes go through a
 * bounded queue and one async writer, so the publisher's event loop turn
 * never waits for the disk; when the disk falls behind, the oldest writes
 * are dropped and counted (the live edge is served from memory anyway).
 * The folder is kept under maxBytes by deleting the oldest segments of any
 * stream. Only files with our names are ever written or deleted.
 */
export class HlsDiskStore extends TypedEmitter<HlsDiskStoreEvents> {
	readonly dir: string;
	readonly #maxBytes: number;
	readonly #logger: Logger;
	readonly #queue: BoundedQueue<Job>;
	/** In write order: the first entries are the oldest. */
	readonly #entries = new Map<string, Entry>();
	readonly #streamDirs = new Set<string>();
	#bytes = 0;
	#written = 0;
	#evicted = 0;
	#errors = 0;
	#draining: Promise<void> | null = null;
	readonly #unlinking = new Set<Promise<void>>();
	#closed = false;

	private constructor(opts: HlsDiskStoreOptions) {
		super();
		this.dir = path.resolve(opts.dir);
		this.#maxBytes = opts.maxBytes;
		this.#logger = opts.logger.child({ component: 'hls-disk' });
		this.setListenerErrorLogger(this.#logger);
		this.#queue = new BoundedQueue(opts.queueCapacity ?? 256);
	}

	/** Creates the folder and deletes what an earlier run left in it. */
	static async create(opts: HlsDiskStoreOptions): Promise<HlsDiskStore> {
		const store = new HlsDiskStore(opts);
		await fs.mkdir(store.dir, { recursive: true });
		await store.#wipe();
		return store;
	}

	/** Writes dropped because the disk fell behind (a metrics DropCounter). */
	get dropped(): number {
		return this.#queue.dropped;
	}

	get stats(): HlsDiskStoreStats {
		return {
			files: this.#entries.size,
			bytes: this.#bytes,
			written: this.#written,
			dropped: this.#queue.dropped,
			evicted: this.#evicted,
			errors: this.#errors,
		};
	}

	/**
	 * Removes our files from stream folders left by an earlier run. Anything
	 * else (a misconfigured dir pointing at someone's files) is left alone.
	 */
	async #wipe(): Promise<void> {
		let removed = 0;
		for (const d of await fs.readdir(this.dir, { withFileTypes: true })) {
			if (!d.isDirectory() || !isValidStreamName(d.name)) continue;
			const sub = path.join(this.dir, d.name);
			for (const f of await fs.readdir(sub, { withFileTypes: true })) {
				if (!f.isFile() || !isStoredFileName(f.name)) continue;
				await fs.rm(path.join(sub, f.name), { force: true });
				removed++;
			}
			await fs.rmdir(sub).catch(() => undefined);
		}
		if (removed > 0) this.#logger.info({ dir: this.dir, removed }, 'removed HLS files left from an earlier run');
	}

	/** The folder of a stream (its name is already validated). */
	streamDir(stream: string): string {
		return path.join(this.dir, stream);
	}

	/** The path of a stored file, checked to lie inside its stream's folder; null if not on disk. */
	pathOf(stream: string, name: string): string | null {
		const entry = this.#entries.get(key(stream, name));
		if (entry?.state !== 'stored') return null;
		const folder = path.resolve(this.dir, stream);
		const file = path.resolve(folder, name);
		if (path.dirname(file) !== folder || !folder.startsWith(this.dir + path.sep)) return null;
		return file;
	}

	/** Queues a file for writing; never waits. */
	write(stream: string, name: string, data: Buffer | Buffer[], kind: StoredKind): void {
		if (this.#closed) throw new ClosedError('HLS disk store');
		const chunks = Array.isArray(data) ? data : [data];
		let bytes = 0;
		for (const c of chunks) bytes += c.length;
		const k = key(stream, name);
		const existing = this.#entries.get(k);
		if (existing) this.#forget(existing);
		const entry: Entry = { stream, name, kind, bytes, state: 'queued', removed: false };
		this.#entries.set(k, entry);
		this.#bytes += bytes;
		const dropped = this.#queue.push({ entry, data: chunks });
		if (dropped) {
			this.#logger.warn({ stream: dropped.entry.stream, file: dropped.entry.name }, 'disk too slow: dropped an HLS write');
			this.#forget(dropped.entry);
		}
		this.#enforceLimit();
		this.#drain();
	}

	/** Deletes a file (now, or after its write if one is in progress). */
	remove(stream: string, name: string): void {
		const entry = this.#entries.get(key(stream, name));
		if (entry) this.#forget(entry);
	}

	/**
	 * Deletes the files of a stream written so far and then its folder if
	 * nothing else (a newer session's files) is in it.
	 */
	async removeStream(stream: string): Promise<void> {
		for (const e of [...this.#entries.values()]) if (e.stream === stream) this.#forget(e);
		await this.flush();
		if ([...this.#entries.values()].some((e) => e.stream === stream)) return;
		try {
			await fs.rmdir(this.streamDir(stream));
			this.#streamDirs.delete(stream);
		} catch (err) {
			const code = (err as NodeJS.ErrnoException).code;
			if (code !== 'ENOENT' && code !== 'ENOTEMPTY') this.#logger.debug({ err, stream }, 'could not remove stream folder');
		}
	}

	#forget(entry: Entry): void {
		const k = key(entry.stream, entry.name);
		if (this.#entries.get(k) === entry) this.#entries.delete(k);
		if (entry.removed) return;
		entry.removed = true;
		this.#bytes -= entry.bytes;
		if (entry.state === 'stored') this.#unlink(entry);
	}

	#unlink(entry: Entry): void {
		const p = fs.rm(path.join(this.dir, entry.stream, entry.name), { force: true }).catch((err: unknown) => {
			this.#errors++;
			this.#logger.warn({ err, stream: entry.stream, file: entry.name }, 'could not delete HLS file');
		});
		this.#unlinking.add(p);
		void p.finally(() => this.#unlinking.delete(p));
	}

	#enforceLimit(): void {
		if (this.#bytes <= this.#maxBytes) return;
		for (const e of [...this.#entries.values()]) {
			if (this.#bytes <= this.#maxBytes) break;
			if (e.kind !== 'segment') continue;
			this.#evicted++;
			this.#forget(e);
			this.#logger.warn({ stream: e.stream, file: e.name, maxBytes: this.#maxBytes }, 'HLS folder over its size limit: deleted the oldest segment');
			this.emit('evicted', e.stream, e.name);
		}
	}

	#drain(): void {
		if (this.#draining) return;
		this.#draining = (async (): Promise<void> => {
			for (let job = this.#queue.shift(); job; job = this.#queue.shift()) {
				const { entry } = job;
				if (entry.removed) continue;
				entry.state = 'writing';
				try {
					const file = path.join(this.dir, entry.stream, entry.name);
					const data = job.data.length === 1 ? (job.data[0] as Buffer) : Buffer.concat(job.data);
					if (!this.#streamDirs.has(entry.stream)) {
						await fs.mkdir(this.streamDir(entry.stream), { recursive: true });
						this.#streamDirs.add(entry.stream);
					}
					try {
						await fs.writeFile(file, data);
					} catch (err) {
						// The folder went away with an earlier session's cleanup: make it again.
						if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
						await fs.mkdir(this.streamDir(entry.stream), { recursive: true });
						await fs.writeFile(file, data);
					}
					entry.state = 'stored';
					this.#written++;
					if (entry.removed) this.#unlink(entry);
				} catch (err) {
					this.#errors++;
					this.#logger.warn({ err, stream: entry.stream, file: entry.name }, 'could not write HLS file');
					this.#streamDirs.delete(entry.stream);
					this.#forget(entry);
				}
			}
		})().finally(() => {
			this.#draining = null;
		});
	}

	/** Waits for queued writes and deletions (for tests and shutdown). */
	async flush(): Promise<void> {
		while (this.#draining || this.#unlinking.size > 0) {
			await this.#draining;
			await Promise.all([...this.#unlinking]);
		}
	}

	/** Drops queued writes, waits for the one in progress; idempotent. Files stay until removed. */
	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		for (let job = this.#queue.shift(); job; job = this.#queue.shift()) this.#forget(job.entry);
		await this.flush();
		this.emit('close');
		this.removeAllListeners();
	}
}

function key(stream: string, name: string): string {
	return `${stream}/${name}`;
}
