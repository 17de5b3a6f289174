type AnyListener = (...args: never[]) => void;

/**
 * A tiny typed event emitter for the viewer libraries (browser and Node), so
 * neither needs Node's `events` nor the DOM's EventTarget. A listener that
 * throws is reported and does not stop the others.
 */
export class Emitter<E extends Record<string, unknown[]>> {
	readonly #listeners = new Map<keyof E, AnyListener[]>();

	on<K extends keyof E>(event: K, listener: (...args: E[K]) => void): this {
		const list = this.#listeners.get(event) ?? [];
		list.push(listener as unknown as AnyListener);
		this.#listeners.set(event, list);
		return this;
	}

	once<K extends keyof E>(event: K, listener: (...args: E[K]) => void): this {
		const wrapper = (...args: E[K]): void => {
			this.off(event, wrapper);
			listener(...args);
		};
		return this.on(event, wrapper);
	}

	off<K extends keyof E>(event: K, listener: (...args: E[K]) => void): this {
		const list = this.#listeners.get(event);
		if (!list) return this;
		const i = list.indexOf(listener as unknown as AnyListener);
		if (i !== -1) list.splice(i, 1);
		return this;
	}

	listenerCount(event: keyof E): number {
		return this.#listeners.get(event)?.length ?? 0;
	}

	protected emit<K extends keyof E>(event: K, ...args: E[K]): void {
		for (const l of [...(this.#listeners.get(event) ?? [])]) {
			try {
				(l as unknown as (...a: E[K]) => void)(...args);
			} catch (err) {
				console.error(`subsecond: a '${String(event)}' listener threw`, err);
			}
		}
	}

	protected removeAllListeners(): void {
		this.#listeners.clear();
	}
}
