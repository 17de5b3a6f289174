import { spawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { TypedEmitter } from './emitter.js';
import { ClosedError } from './errors.js';
import type { Logger } from './logger.js';

/** Every supervised child alive in this process: for metrics and leak checks. */
const liveChildren = new Set<ChildProcess>();

export function liveChildCount(): number {
	return liveChildren.size;
}

export interface SupervisedProcessOptions {
	/** Short name for logs and metrics, e.g. `opus-encoder`. */
	name: string;
	command: string;
	/** Called before every (re)start, so arguments can change between runs. */
	args: () => string[];
	logger: Logger;
	spawnOptions?: SpawnOptions;
	/** First restart delay; doubles on each crash in a row, up to maxBackoffMs. */
	initialBackoffMs?: number;
	maxBackoffMs?: number;
	/** A run that lasted this long resets the backoff. */
	stableAfterMs?: number;
	/** How long close() waits after SIGTERM before SIGKILL. */
	killTimeoutMs?: number;
	/** Lines of stderr kept to explain a crash. */
	stderrLines?: number;
}

export interface SupervisedProcessEvents extends Record<string, unknown[]> {
	/** A new child is running (first start and every restart). */
	spawn: [child: ChildProcess];
	/** The child exited unexpectedly; a restart is scheduled after `delayMs`. */
	crash: [info: { code: number | null; signal: NodeJS.Signals | null; stderr: string; delayMs: number }];
	close: [];
}

/**
 * A child process that is restarted with exponential backoff when it dies, and
 * killed and reaped by close(). Used for the ffmpeg children of the bridge and
 * of HLS, so that a crash is logged and repaired instead of ending a stream.
 */
export class SupervisedProcess extends TypedEmitter<SupervisedProcessEvents> {
	readonly name: string;
	readonly #opts: Required<Omit<SupervisedProcessOptions, 'spawnOptions'>> & { spawnOptions: SpawnOptions };
	#child: ChildProcess | null = null;
	#closed = false;
	#restarts = 0;
	#backoffMs: number;
	#restartTimer: NodeJS.Timeout | null = null;
	#startedAt = 0;
	#stderrTail: string[] = [];

	private constructor(opts: SupervisedProcessOptions) {
		super();
		this.name = opts.name;
		this.#opts = {
			initialBackoffMs: 200,
			maxBackoffMs: 10_000,
			stableAfterMs: 10_000,
			killTimeoutMs: 2_000,
			stderrLines: 20,
			spawnOptions: {},
			...opts,
		};
		this.#backoffMs = this.#opts.initialBackoffMs;
		this.setListenerErrorLogger(opts.logger);
	}

	static create(opts: SupervisedProcessOptions): SupervisedProcess {
		const p = new SupervisedProcess(opts);
		p.#start();
		return p;
	}

	get child(): ChildProcess | null {
		return this.#child;
	}

	get restarts(): number {
		return this.#restarts;
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** Kills the current child on purpose; it is restarted like after a crash. */
	restart(): void {
		if (this.#closed) throw new ClosedError(`process ${this.name}`);
		this.#child?.kill('SIGKILL');
	}

	#start(): void {
		const args = this.#opts.args();
		const child = spawn(this.#opts.command, args, {
			stdio: ['pipe', 'pipe', 'pipe'],
			...this.#opts.spawnOptions,
		});
		this.#child = child;
		this.#startedAt = Date.now();
		this.#stderrTail = [];
		liveChildren.add(child);
		this.#opts.logger.debug({ pid: child.pid, args }, `${this.name} started`);

		child.stderr?.setEncoding('utf8');
		child.stderr?.on('data', (chunk: string) => {
			for (const line of chunk.split('\n')) {
				if (!line.trim()) continue;
				this.#stderrTail.push(line);
				if (this.#stderrTail.length > this.#opts.stderrLines) this.#stderrTail.shift();
			}
		});
		// EPIPE on a dying child's stdin must not become an uncaught exception.
		child.stdin?.on('error', () => undefined);
		child.stdout?.on('error', () => undefined);
		child.on('error', (err) => {
			this.#opts.logger.error({ err }, `${this.name} failed to spawn`);
		});
		child.on('exit', (code, signal) => {
			liveChildren.delete(child);
			if (this.#child === child) this.#child = null;
			if (this.#closed) return;
			if (Date.now() - this.#startedAt >= this.#opts.stableAfterMs) this.#backoffMs = this.#opts.initialBackoffMs;
			const delayMs = this.#backoffMs;
			this.#backoffMs = Math.min(this.#backoffMs * 2, this.#opts.maxBackoffMs);
			const stderr = this.#stderrTail.join('\n');
			this.#opts.logger.warn({ code, signal, stderr, delayMs }, `${this.name} exited; restarting`);
			this.emit('crash', { code, signal, stderr, delayMs });
			this.#restartTimer = setTimeout(() => {
				this.#restartTimer = null;
				if (this.#closed) return;
				this.#restarts++;
				this.#start();
			}, delayMs);
		});
		if (child.pid !== undefined) this.emit('spawn', child);
	}

	/** Stops supervising, kills the child (SIGTERM, then SIGKILL) and waits for its exit. */
	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		if (this.#restartTimer) clearTimeout(this.#restartTimer);
		const child = this.#child;
		this.#child = null;
		if (child && child.exitCode === null && child.signalCode === null) {
			await new Promise<void>((resolve) => {
				const timer = setTimeout(() => child.kill('SIGKILL'), this.#opts.killTimeoutMs);
				child.once('exit', () => {
					clearTimeout(timer);
					resolve();
				});
				child.stdin?.end();
				child.kill('SIGTERM');
			});
		}
		this.emit('close');
		this.removeAllListeners();
	}
}
