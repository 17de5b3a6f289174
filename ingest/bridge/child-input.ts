import type { Writable } from 'node:stream';
import { BoundedQueue } from '../../server/common/queue.js';

export interface ChildInputItem {
	data: Buffer | readonly Buffer[];
	/** Called when the item is handed to the pipe (not when it is dropped). */
	onWrite?: () => void;
}

/**
 * What we write into a child's stdin. Writes go straight to the pipe while it
 * accepts them; while it pushes back (the child is busy or stuck), items wait
 * in a bounded queue that drops the oldest and counts the drops, so a stuck
 * encoder never slows the publisher or grows memory.
 */
export class ChildInput {
	readonly #queue: BoundedQueue<ChildInputItem>;
	readonly #onDrop: ((item: ChildInputItem) => void) | null;
	#stream: Writable | null = null;
	#blocked = false;
	#written = 0;
	readonly #onDrain = (): void => {
		this.#blocked = false;
		this.#flush();
	};

	constructor(capacity: number, onDrop?: (item: ChildInputItem) => void) {
		this.#queue = new BoundedQueue(capacity);
		this.#onDrop = onDrop ?? null;
	}

	/** Items dropped because the child did not keep up. */
	get dropped(): number {
		return this.#queue.dropped;
	}

	get queued(): number {
		return this.#queue.size;
	}

	get written(): number {
		return this.#written;
	}

	/**
	 * Starts writing into a (new) child's stdin: `preamble` first (stream
	 * headers), then what queued up while there was no child.
	 */
	attach(stream: Writable, preamble: readonly Buffer[] = []): void {
		this.detach();
		this.#stream = stream;
		this.#blocked = false;
		stream.on('drain', this.#onDrain);
		for (const b of preamble) this.writeNow(b);
		this.#flush();
	}

	/** Stops writing (the child is gone); queued items stay until clear(). */
	detach(): void {
		this.#stream?.off('drain', this.#onDrain);
		this.#stream = null;
		this.#blocked = false;
	}

	clear(): void {
		this.#queue.clear();
	}

	/**
	 * Writes now, bypassing the queue and its bound: for stream headers and
	 * for a catch-up burst whose size the caller bounds.
	 */
	writeNow(data: Buffer): void {
		if (!this.#writable()) return;
		this.#write({ data });
	}

	push(item: ChildInputItem): void {
		if (this.#queue.size === 0 && this.#writable() && !this.#blocked) {
			this.#write(item);
			return;
		}
		const evicted = this.#queue.push(item);
		if (evicted) this.#onDrop?.(evicted);
	}

	#writable(): boolean {
		const s = this.#stream;
		return s !== null && !s.destroyed && s.writable;
	}

	#write(item: ChildInputItem): void {
		const s = this.#stream as Writable;
		let ok: boolean;
		if (Buffer.isBuffer(item.data)) {
			ok = s.write(item.data);
		} else {
			s.cork();
			ok = true;
			for (const b of item.data) ok = s.write(b);
			s.uncork();
		}
		this.#written++;
		item.onWrite?.();
		if (!ok) this.#blocked = true;
	}

	#flush(): void {
		while (this.#queue.size > 0 && this.#writable() && !this.#blocked) {
			this.#write(this.#queue.shift() as ChildInputItem);
		}
	}
}
