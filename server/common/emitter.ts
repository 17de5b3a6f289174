import type { Logger } from './logger.js';
import { rootLogger } from './logger.js';

/** Maps event names to their argument tuples. */
export type EventMap = Record<string, unknown[]>;
type Listener<A extends unknown[]> = (...args: A) => void;

/**
 * A small typed event emitter. Each listener runs in its own try/catch, so one
 * faulty listener neither breaks the emitter nor stops the other listeners; the
 * error is logged with the event name.
 */
export class TypedEmitter<E extends EventMap> {
	/** Type-only: lets helpers such as waitFor() recover the event map. */
	declare readonly __events?: E;
	readonly #listeners = new Map<PropertyKey, Listener<never[]>[]>();
	#errorLogger: Logger | undefined;

	/** Sets the logger that listener errors go to (the root logger otherwise). */
	protected setListenerErrorLogger(logger: Logger): void {
		this.#errorLogger = logger;
	}

	on<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
		const list = this.#listeners.get(event);
		const l = listener as unknown as Listener<never[]>;
		if (list) list.push(l);
		else this.#listeners.set(event, [l]);
		return this;
	}

	once<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
		const wrapper: Listener<E[K]> = (...args) => {
			this.off(event, wrapper);
			listener(...args);
		};
		return this.on(event, wrapper);
	}

	off<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
		const list = this.#listeners.get(event);
		if (!list) return this;
		const i = list.indexOf(listener as unknown as Listener<never[]>);
		if (i !== -1) list.splice(i, 1);
		if (list.length === 0) this.#listeners.delete(event);
		return this;
	}

	removeAllListeners(event?: keyof E): this {
		if (event === undefined) this.#listeners.clear();
		else this.#listeners.delete(event);
		return this;
	}

	listenerCount(event: keyof E): number {
		return this.#listeners.get(event)?.length ?? 0;
	}

	/** Calls every listener of `event`; returns whether there was any. */
	emit<K extends keyof E>(event: K, ...args: E[K]): boolean {
		const list = this.#listeners.get(event);
		if (!list || list.length === 0) return false;
		// Copy: listeners may add or remove listeners while we iterate.
		for (const l of [...list]) {
			try {
				(l as unknown as Listener<E[K]>)(...args);
			} catch (err) {
				(this.#errorLogger ?? rootLogger).error({ err, event: String(event) }, 'event listener threw');
			}
		}
		return true;
	}
}

/** Resolves with the arguments of the next `event`, or rejects after `timeoutMs`. */
export type EventsOf<T> = T extends { __events?: infer E } ? NonNullable<E> : never;

export function waitFor<T extends TypedEmitter<EventMap>, K extends keyof EventsOf<T> & string>(
	emitter: T,
	event: K,
	timeoutMs: number,
	filter?: (...args: EventsOf<T>[K]) => boolean,
): Promise<EventsOf<T>[K]> {
	type A = EventsOf<T>[K];
	const em = emitter as unknown as TypedEmitter<Record<K, A>>;
	return new Promise((resolve, reject) => {
		const listener = (...args: A): void => {
			if (filter && !filter(...args)) return;
			clearTimeout(timer);
			em.off(event, listener);
			resolve(args);
		};
		const timer = setTimeout(() => {
			em.off(event, listener);
			reject(new Error(`timed out after ${timeoutMs} ms waiting for '${event}'`));
		}, timeoutMs);
		em.on(event, listener);
	});
}
