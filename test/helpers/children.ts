import type { ChildProcess } from 'node:child_process';

/**
 * The child processes a test or benchmark started, each kept until it exits,
 * so whatever is still running can be killed at the end.
 */
export class ChildSet {
	readonly #children = new Set<ChildProcess>();

	/** Keeps `child` until it exits; returns it. */
	add<C extends ChildProcess>(child: C): C {
		this.#children.add(child);
		child.once('exit', () => this.#children.delete(child));
		return child;
	}

	/** SIGKILLs every child still running; resolves when all have exited. */
	async killAll(): Promise<void> {
		await Promise.all([...this.#children].map((c) => killAndWait(c)));
	}
}

/** SIGKILLs a child unless it already exited; resolves once it has. */
export function killAndWait(child: ChildProcess): Promise<void> {
	return new Promise<void>((resolve) => {
		if (child.exitCode !== null || child.signalCode !== null) return resolve();
		child.once('exit', () => resolve());
		child.kill('SIGKILL');
	});
}

/**
 * Asks a child to stop with `signal`, SIGKILLs it if it has not exited after
 * `graceMs`, and resolves when `exited` does.
 */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals, exited: Promise<unknown>, graceMs = 2000): Promise<void> {
	if (child.exitCode !== null || child.signalCode !== null) return;
	const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
	child.kill(signal);
	await exited;
	clearTimeout(t);
}
