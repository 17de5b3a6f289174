/**
 * A bounded FIFO that never blocks the producer: when full, the oldest item is
 * dropped and counted. Slow consumers lose data, never slow the publisher.
 */
export class BoundedQueue<T> {
	readonly capacity: number;
	#items: (T | undefined)[];
	#head = 0;
	#size = 0;
	#dropped = 0;

	constructor(capacity: number) {
		if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
		this.capacity = capacity;
		this.#items = new Array<T | undefined>(capacity);
	}

	get size(): number {
		return this.#size;
	}

	/** Items dropped because the queue was full, since creation. */
	get dropped(): number {
		return this.#dropped;
	}

	/** Adds an item; returns the item dropped to make room, if any. */
	push(item: T): T | undefined {
		let evicted: T | undefined;
		if (this.#size === this.capacity) {
			evicted = this.#items[this.#head];
			this.#items[this.#head] = undefined;
			this.#head = (this.#head + 1) % this.capacity;
			this.#size--;
			this.#dropped++;
		}
		this.#items[(this.#head + this.#size) % this.capacity] = item;
		this.#size++;
		return evicted;
	}

	shift(): T | undefined {
		if (this.#size === 0) return undefined;
		const item = this.#items[this.#head];
		this.#items[this.#head] = undefined;
		this.#head = (this.#head + 1) % this.capacity;
		this.#size--;
		return item;
	}

	peek(): T | undefined {
		return this.#size === 0 ? undefined : this.#items[this.#head];
	}

	clear(): void {
		this.#items = new Array<T | undefined>(this.capacity);
		this.#head = 0;
		this.#size = 0;
	}
}
