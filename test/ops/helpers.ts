import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One parsed Prometheus sample. */
export interface Sample {
	name: string;
	labels: Record<string, string>;
	value: number;
}

/** Parses the Prometheus text exposition format (enough for our own output). */
export function parseMetrics(text: string): { samples: Sample[]; help: Map<string, string>; types: Map<string, string> } {
	const samples: Sample[] = [];
	const help = new Map<string, string>();
	const types = new Map<string, string>();
	for (const line of text.split('\n')) {
		if (!line.trim()) continue;
		let m = /^# HELP (\S+) (.*)$/.exec(line);
		if (m) {
			help.set(m[1]!, m[2]!);
			continue;
		}
		m = /^# TYPE (\S+) (\S+)$/.exec(line);
		if (m) {
			types.set(m[1]!, m[2]!);
			continue;
		}
		if (line.startsWith('#')) continue;
		m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
		if (!m) throw new Error(`unparsable metrics line: ${line}`);
		const labels: Record<string, string> = {};
		const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
		for (let l = re.exec(m[2] ?? ''); l; l = re.exec(m[2] ?? '')) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
		samples.push({ name: m[1]!, labels, value: Number(m[3]) });
	}
	return { samples, help, types };
}

/** The value of the one sample of `name` whose labels include `labels`; undefined if none. */
export function sampleValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
	const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
	if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
	return found[0]?.value;
}

/** The sum of every sample of `name` whose labels include `labels`. */
export function sampleSum(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
	return samples
		.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
		.reduce((a, s) => a + s.value, 0);
}

export interface HookRequest {
	method: string;
	url: string;
	headers: http.IncomingHttpHeaders;
	/** The body as sent. */
	raw: string;
	/** The body parsed as JSON, or the raw text if it is not JSON. */
	body: unknown;
	receivedAt: number;
}

/** Answers a hook request; whatever it returns (a promise included) is awaited and ignored. */
export type HookHandler = (req: HookRequest, res: http.ServerResponse) => unknown;

/** A tiny local HTTP server standing in for an operator's webhook receiver. */
export class HookServer {
	readonly requests: HookRequest[] = [];
	handler: HookHandler = (_req, res) => {
		res.writeHead(204).end();
	};
	readonly #server: http.Server;

	private constructor() {
		this.#server = http.createServer((req, res) => {
			const chunks: Buffer[] = [];
			req.on('data', (c: Buffer) => chunks.push(c));
			req.on('end', () => {
				const text = Buffer.concat(chunks).toString('utf8');
				let body: unknown = text;
				try {
					body = JSON.parse(text);
				} catch {
					// keep the text
				}
				const hr: HookRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, raw: text, body, receivedAt: Date.now() };
				this.requests.push(hr);
				Promise.resolve(this.handler(hr, res)).catch(() => res.destroy());
			});
		});
	}

	static async create(): Promise<HookServer> {
		const s = new HookServer();
		await new Promise<void>((resolve) => s.#server.listen(0, '127.0.0.1', resolve));
		return s;
	}

	get port(): number {
		return (this.#server.address() as AddressInfo).port;
	}

	url(path = '/hook'): string {
		return `http://127.0.0.1:${this.port}${path}`;
	}

	bodies<T = Record<string, unknown>>(pathPrefix = '/'): T[] {
		return this.requests.filter((r) => r.url.startsWith(pathPrefix)).map((r) => r.body as T);
	}

	async close(): Promise<void> {
		await new Promise<void>((resolve) => {
			this.#server.close(() => resolve());
			this.#server.closeAllConnections();
		});
	}
}

/** A port nothing listens on (bound then released). */
export async function closedPort(): Promise<number> {
	const s = http.createServer();
	await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
	const port = (s.address() as AddressInfo).port;
	await new Promise<void>((resolve) => s.close(() => resolve()));
	return port;
}
