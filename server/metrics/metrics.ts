import fs from 'node:fs';
import { createRequire } from 'node:module';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { TypedEmitter } from '../common/emitter.js';
import { ClosedError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { liveChildCount } from '../common/process.js';
import type { SupervisedProcess } from '../common/process.js';
import type { PublisherProtocol } from '../core/media.js';
import type { Publication, PublicationStats, Stream, StreamRegistry, ViewerPath } from '../core/stream.js';
import type { WorkerPool } from '../sfu/worker-pool.js';
import { SfuStats } from './sfu-stats.js';
import type { MediaKind, RtpDirection, SfuPollResult } from './sfu-stats.js';

const require = createRequire(import.meta.url);
const VERSIONS = {
	version: (require('../../package.json') as { version: string }).version,
	mediasoup: (require('mediasoup/package.json') as { version: string }).version,
	node: process.versions.node,
};

const PROTOCOLS: readonly PublisherProtocol[] = ['rtmp', 'rtmps', 'rtp'];
const PATHS: readonly ViewerPath[] = ['webrtc', 'hls'];
const KINDS: readonly MediaKind[] = ['video', 'audio'];

/** What the bridge did with a keyframe request (PLI/FIR) that reached the ingest. */
export type KeyframeRequestOutcome = 'forced' | 'rate_limited' | 'ignored';
export type WebhookEvent = 'publish' | 'unpublish' | 'viewerJoin' | 'viewerLeave';
/** How a webhook call ended: `allowed`/`denied` for the publish hook, `ok` for notifications. */
export type WebhookResult = 'ok' | 'allowed' | 'denied' | 'http_error' | 'network_error' | 'timeout';

/** Anything that counts the items it dropped, like BoundedQueue. */
export interface DropCounter {
	readonly dropped: number;
}

/**
 * Wraps a cumulative reading (a component's own stats counter) so that each
 * call returns how much it grew since the previous call: for feeding counters
 * from an addCollector() callback.
 */
export function deltaOf(read: () => number): () => number {
	let last = 0;
	return () => {
		const v = read();
		const d = v > last ? v - last : 0;
		last = v;
		return d;
	};
}

// Process and Node.js metrics belong to the process, not to a server: one set,
// merged into every scrape, so several servers in one process (tests) neither
// clash nor each install their own GC observer and event-loop monitor.
let processRegistry: Registry | null = null;
function getProcessRegistry(): Registry {
	if (!processRegistry) {
		processRegistry = new Registry();
		collectDefaultMetrics({ register: processRegistry });
	}
	return processRegistry;
}

/** Resident memory of a process from /proc (Linux); null elsewhere. */
function rssBytes(pid: number): number | null {
	try {
		const statm = fs.readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ');
		const pages = Number(statm[1]);
		return Number.isFinite(pages) ? pages * 4096 : null;
	} catch {
		return null;
	}
}

export interface MetricsOptions {
	registry: StreamRegistry;
	pool: WorkerPool;
	logger: Logger;
	/** Longest a scrape spends polling mediasoup stats. */
	sfuStatsBudgetMs: number;
	/** mediasoup stats younger than this are reused. */
	sfuStatsMaxAgeMs: number;
}

export interface MetricsEvents extends Record<string, unknown[]> {
	close: [];
}

interface Collector {
	name: string;
	fn: () => void | Promise<void>;
}

/**
 * The server's Prometheus metrics (all named subsecond_*), in a registry of
 * its own. Collectors read the stream core, the worker pool and mediasoup at
 * scrape time; other components push what only they know through the small
 * hooks below (bridge delay, keyframe requests, drops, HLS bytes out...).
 * Hooks are cheap, synchronous and never throw, so they can sit on hot paths;
 * after close() they do nothing.
 */
export class Metrics extends TypedEmitter<MetricsEvents> {
	readonly name = 'metrics';
	readonly register = new Registry();
	readonly #opts: MetricsOptions;
	readonly #logger: Logger;
	readonly #sfu: SfuStats;
	readonly #collectors: Collector[] = [];
	readonly #queues = new Map<DropCounter, { component: string; read: () => number }>();
	readonly #processes = new Map<SupervisedProcess, string>();
	readonly #connections = new Map<() => number, PublisherProtocol>();
	/** Publication stats already added to the counters. */
	readonly #seen = new WeakMap<Publication, PublicationStats>();
	#sfuPolled: { at: number; result: SfuPollResult } | null = null;
	#refreshing: Promise<void> | null = null;
	#closed = false;

	readonly #streamsLive: Gauge;
	readonly #publishers: Gauge<'protocol'>;
	readonly #publishSessions: Counter<'protocol'>;
	readonly #publishStart: Gauge<'stream' | 'protocol'>;
	readonly #viewers: Gauge<'path'>;
	readonly #streamViewers: Gauge<'stream' | 'path'>;
	readonly #viewerSessions: Counter<'path'>;
	readonly #ingestBytes: Counter<'stream' | 'kind'>;
	readonly #ingestFrames: Counter<'stream' | 'kind'>;
	readonly #ingestKeyframes: Counter<'stream'>;
	readonly #ingestConnections: Gauge<'protocol'>;
	readonly #ingestErrors: Counter<'protocol' | 'reason'>;
	readonly #egressBytes: Counter<'stream' | 'path'>;
	readonly #packetsLost: Counter<'direction' | 'kind'>;
	readonly #retransmitted: Counter<'direction' | 'kind'>;
	readonly #nacks: Counter<'direction' | 'kind'>;
	readonly #keyframeRequests: Counter<'direction' | 'type'>;
	readonly #keyframeHandled: Counter<'stream' | 'outcome'>;
	readonly #framesDropped: Counter<'component'>;
	readonly #bridgeDelay: Histogram<'kind'>;
	readonly #children: Gauge<'kind'>;
	readonly #childRestarts: Counter<'kind'>;
	readonly #workerCpu: Counter<'worker' | 'mode'>;
	readonly #workerMaxRss: Gauge<'worker'>;
	readonly #workerRss: Gauge<'worker'>;
	readonly #sfuObjects: Gauge<'type'>;
	readonly #sfuPollSeconds: Gauge;
	readonly #sfuPolledRatio: Gauge;
	readonly #webhookRequests: Counter<'event' | 'result'>;
	readonly #webhookSeconds: Histogram<'event'>;
	readonly #webhookDropped: Counter<'event'>;
	readonly #adminActions: Counter<'action'>;

	constructor(opts: MetricsOptions) {
		super();
		this.#opts = opts;
		this.#logger = opts.logger.child({ component: 'metrics' });
		this.setListenerErrorLogger(this.#logger);
		const registers = [this.register];
		const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> =>
			new Counter<L>({ name, help, labelNames, registers });
		const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> =>
			new Gauge<L>({ name, help, labelNames, registers });

		gauge('subsecond_build_info', 'Versions of this server, mediasoup and Node.js (always 1).', [
			'version',
			'mediasoup',
			'node',
		]).set(VERSIONS, 1);

		this.#streamsLive = gauge('subsecond_streams_live', 'Streams with a publisher.');
		this.#publishers = gauge('subsecond_publishers', 'Live publishers by ingest protocol.', ['protocol']);
		this.#publishSessions = counter('subsecond_publish_sessions_total', 'Publications started, by ingest protocol.', [
			'protocol',
		]);
		this.#publishStart = gauge(
			'subsecond_stream_publish_start_time_seconds',
			'Unix time the current publication of a live stream started (uptime = time() - this).',
			['stream', 'protocol'],
		);
		this.#viewers = gauge('subsecond_viewers', 'Viewers by delivery path.', ['path']);
		this.#streamViewers = gauge('subsecond_stream_viewers', 'Viewers of a stream by delivery path.', ['stream', 'path']);
		this.#viewerSessions = counter('subsecond_viewer_sessions_total', 'Viewer sessions started, by delivery path.', [
			'path',
		]);
		this.#ingestBytes = counter(
			'subsecond_ingest_bytes_total',
			'Media payload bytes received from publishers (H.264 NAL units, audio frames), across publisher changes.',
			['stream', 'kind'],
		);
		this.#ingestFrames = counter('subsecond_ingest_frames_total', 'Media frames received from publishers.', [
			'stream',
			'kind',
		]);
		this.#ingestKeyframes = counter('subsecond_ingest_keyframes_total', 'Video keyframes received from publishers.', [
			'stream',
		]);
		this.#ingestConnections = gauge('subsecond_ingest_connections', 'Open ingest connections or sessions.', [
			'protocol',
		]);
		this.#ingestErrors = counter(
			'subsecond_ingest_errors_total',
			'Ingest input refused or dropped (malformed messages, refused codecs, closed connections...).',
			['protocol', 'reason'],
		);
		this.#egressBytes = counter(
			'subsecond_egress_bytes_total',
			'Bytes sent to viewers: WebRTC transport bytes measured by mediasoup, HLS bytes served.',
			['stream', 'path'],
		);
		this.#packetsLost = counter(
			'subsecond_rtp_packets_lost_total',
			'RTP packets lost: ingest = missing at the SFU, egress = reported lost by viewers.',
			['direction', 'kind'],
		);
		this.#retransmitted = counter(
			'subsecond_rtp_retransmitted_packets_total',
			'RTP packets retransmitted after a NACK: ingest = received by the SFU, egress = sent to viewers.',
			['direction', 'kind'],
		);
		this.#nacks = counter('subsecond_rtp_nacks_total', 'RTCP NACKs: ingest = sent upstream, egress = received from viewers.', [
			'direction',
			'kind',
		]);
		this.#keyframeRequests = counter(
			'subsecond_keyframe_requests_total',
			'Keyframe requests (PLI/FIR): egress = from viewers to the SFU, ingest = from the SFU to the publisher side.',
			['direction', 'type'],
		);
		this.#keyframeHandled = counter(
			'subsecond_keyframe_requests_handled_total',
			'Keyframe requests that reached the bridge, by what it did (forced a keyframe, rate limited, ignored on passthrough).',
			['stream', 'outcome'],
		);
		this.#framesDropped = counter(
			'subsecond_frames_dropped_total',
			'Frames dropped by bounded queues because a consumer (encoder, disk writer, viewer) was too slow.',
			['component'],
		);
		this.#bridgeDelay = new Histogram<'kind'>({
			name: 'subsecond_bridge_delay_seconds',
			help: 'Delay the ingest bridge adds: from a frame fully received to its first RTP packet sent.',
			labelNames: ['kind'],
			buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1],
			registers,
		});
		this.#children = gauge('subsecond_child_processes', 'Live child processes (ffmpeg transcoders...) by kind.', ['kind']);
		this.#childRestarts = counter('subsecond_child_restarts_total', 'Child processes that died and were restarted, by kind.', [
			'kind',
		]);
		this.#workerCpu = counter('subsecond_worker_cpu_seconds_total', 'CPU time of each mediasoup worker.', [
			'worker',
			'mode',
		]);
		this.#workerMaxRss = gauge('subsecond_worker_max_rss_bytes', 'Peak resident memory of each mediasoup worker.', [
			'worker',
		]);
		this.#workerRss = gauge('subsecond_worker_rss_bytes', 'Resident memory of each mediasoup worker (Linux).', ['worker']);
		this.#sfuObjects = gauge('subsecond_sfu_objects', 'Live mediasoup objects by type.', ['type']);
		this.#sfuPollSeconds = gauge('subsecond_sfu_stats_poll_duration_seconds', 'Time the last mediasoup stats poll took.');
		this.#sfuPolledRatio = gauge(
			'subsecond_sfu_stats_polled_ratio',
			'Share of mediasoup objects the last stats poll read within its budget (the rest follow on later scrapes).',
		);
		this.#webhookRequests = counter('subsecond_webhook_requests_total', 'Webhook calls by event and result.', [
			'event',
			'result',
		]);
		this.#webhookSeconds = new Histogram<'event'>({
			name: 'subsecond_webhook_request_duration_seconds',
			help: 'Webhook call duration (one attempt).',
			labelNames: ['event'],
			buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
			registers,
		});
		this.#webhookDropped = counter(
			'subsecond_webhook_dropped_total',
			'Webhook notifications given up: queue full or every retry failed.',
			['event'],
		);
		this.#adminActions = counter('subsecond_admin_actions_total', 'Admin API actions performed.', ['action']);

		// Label sets that should read 0 rather than be absent.
		for (const p of PROTOCOLS) this.#publishSessions.inc({ protocol: p }, 0);
		for (const p of PATHS) this.#viewerSessions.inc({ path: p }, 0);

		this.#sfu = new SfuStats(
			opts.pool,
			{
				egressBytes: (stream, n) => this.#egressBytes.inc({ stream, path: 'webrtc' }, n),
				packetsLost: (direction, kind, n) => this.#packetsLost.inc({ direction, kind }, n),
				retransmitted: (direction, kind, n) => this.#retransmitted.inc({ direction, kind }, n),
				nacks: (direction, kind, n) => this.#nacks.inc({ direction, kind }, n),
				keyframeRequests: (direction, type, n) => this.#keyframeRequests.inc({ direction, type }, n),
			},
			this.#logger,
		);
		for (const direction of ['ingest', 'egress'] as const) {
			for (const kind of KINDS) {
				this.#packetsLost.inc({ direction, kind }, 0);
				this.#retransmitted.inc({ direction, kind }, 0);
				this.#nacks.inc({ direction, kind }, 0);
			}
			for (const type of ['pli', 'fir'] as const) this.#keyframeRequests.inc({ direction, type }, 0);
		}

		const { registry } = opts;
		registry.on('publish', this.#onPublish);
		registry.on('unpublish', this.#onUnpublish);
		registry.on('viewerJoin', this.#onViewerJoin);
		registry.on('streamRemoved', this.#onStreamRemoved);
	}

	readonly #onPublish = (_stream: Stream, pub: Publication): void => {
		this.#publishSessions.inc({ protocol: pub.protocol });
	};

	readonly #onUnpublish = (_stream: Stream, pub: Publication): void => {
		// The final stats of a publication, or bytes since the last scrape are lost.
		this.#accountPublication(pub);
	};

	readonly #onViewerJoin = (_stream: Stream, viewer: { path: ViewerPath }): void => {
		this.#viewerSessions.inc({ path: viewer.path });
	};

	readonly #onStreamRemoved = (stream: Stream): void => {
		// Forgotten streams take their series with them: names are unbounded over time.
		const s = stream.name;
		for (const kind of KINDS) {
			this.#ingestBytes.remove({ stream: s, kind });
			this.#ingestFrames.remove({ stream: s, kind });
		}
		this.#ingestKeyframes.remove({ stream: s });
		for (const path of PATHS) this.#egressBytes.remove({ stream: s, path });
		for (const outcome of ['forced', 'rate_limited', 'ignored'] as const) this.#keyframeHandled.remove({ stream: s, outcome });
	};

	#accountPublication(pub: Publication): void {
		const now = pub.stats;
		const last = this.#seen.get(pub);
		const stream = pub.streamName;
		const add = (c: Counter<'stream' | 'kind'>, kind: MediaKind, cur: number, prev: number | undefined): void => {
			const d = cur - (prev ?? 0);
			if (d > 0) c.inc({ stream, kind }, d);
		};
		add(this.#ingestBytes, 'video', now.videoBytes, last?.videoBytes);
		add(this.#ingestBytes, 'audio', now.audioBytes, last?.audioBytes);
		add(this.#ingestFrames, 'video', now.videoFrames, last?.videoFrames);
		add(this.#ingestFrames, 'audio', now.audioFrames, last?.audioFrames);
		const k = now.keyframes - (last?.keyframes ?? 0);
		if (k > 0) this.#ingestKeyframes.inc({ stream }, k);
		this.#seen.set(pub, { ...now });
	}

	// ---- hooks for other components ----

	/** Bridge: delay from frame.receivedAt to its first RTP packet sent, in ms. */
	observeBridgeDelay(kind: MediaKind, ms: number): void {
		if (this.#closed || !(ms >= 0)) return;
		this.#bridgeDelay.observe({ kind }, ms / 1000);
	}

	/** Bridge: a keyframe request reached the ingest side of `stream`, and what was done about it. */
	keyframeRequest(stream: string, outcome: KeyframeRequestOutcome): void {
		if (this.#closed) return;
		this.#keyframeHandled.inc({ stream, outcome });
	}

	/** Any bounded queue: `n` frames dropped because its consumer was too slow. */
	framesDropped(component: string, n = 1): void {
		if (this.#closed || !(n > 0)) return;
		this.#framesDropped.inc({ component }, n);
	}

	/**
	 * Bytes sent to viewers on a path mediasoup does not see (HLS). WebRTC is
	 * measured from mediasoup's transports, so it is not accepted here.
	 */
	bytesOut(path: Exclude<ViewerPath, 'webrtc'>, stream: string, n: number): void {
		if (this.#closed || !(n > 0)) return;
		this.#egressBytes.inc({ stream, path }, n);
	}

	/** Ingest: input refused or dropped (`reason`: a short, bounded set of words like `malformed`). */
	ingestError(protocol: PublisherProtocol, reason: string, n = 1): void {
		if (this.#closed || !(n > 0)) return;
		this.#ingestErrors.inc({ protocol, reason }, n);
	}

	/** RTP losses the SFU does not see (plain RTP ingest into our own sockets). */
	rtpPacketsLost(direction: RtpDirection, kind: MediaKind, n: number): void {
		if (this.#closed || !(n > 0)) return;
		this.#packetsLost.inc({ direction, kind }, n);
	}

	/** Webhooks: one call finished. */
	webhookResult(event: WebhookEvent, result: WebhookResult, seconds: number): void {
		if (this.#closed) return;
		this.#webhookRequests.inc({ event, result });
		if (seconds >= 0) this.#webhookSeconds.observe({ event }, seconds);
	}

	/** Webhooks: a notification was given up. */
	webhookDropped(event: WebhookEvent, n = 1): void {
		if (this.#closed || !(n > 0)) return;
		this.#webhookDropped.inc({ event }, n);
	}

	/** Admin API: an action was performed. */
	adminAction(action: string): void {
		if (this.#closed) return;
		this.#adminActions.inc({ action });
	}

	/**
	 * Counts the drops of a bounded queue as `component` at every scrape (and a
	 * last time on untrack). Returns the untrack function.
	 */
	trackQueue(component: string, queue: DropCounter): () => void {
		if (this.#closed) return () => undefined;
		const read = deltaOf(() => queue.dropped);
		this.#queues.set(queue, { component, read });
		return () => {
			if (!this.#queues.delete(queue)) return;
			this.framesDropped(component, read());
		};
	}

	/** Counts a supervised child as `kind` while it runs, and its restarts. Untracked on its close. */
	trackProcess(kind: string, proc: SupervisedProcess): void {
		if (this.#closed || proc.closed) return;
		this.#processes.set(proc, kind);
		this.#childRestarts.inc({ kind }, 0);
		proc.on('crash', () => {
			if (!this.#closed) this.#childRestarts.inc({ kind });
		});
		proc.once('close', () => this.#processes.delete(proc));
	}

	/** Reports open ingest connections of `protocol` (summed over trackers). Returns the untrack function. */
	trackConnections(protocol: PublisherProtocol, count: () => number): () => void {
		if (this.#closed) return () => undefined;
		this.#connections.set(count, protocol);
		return () => void this.#connections.delete(count);
	}

	/**
	 * Runs `fn` at every scrape before the metrics are read, for components that
	 * keep their own stats (use deltaOf() to turn cumulative readings into
	 * increments). A collector that throws is logged and skipped. Returns the
	 * remove function.
	 */
	addCollector(name: string, fn: () => void | Promise<void>): () => void {
		if (this.#closed) return () => undefined;
		const c: Collector = { name, fn };
		this.#collectors.push(c);
		return () => {
			const i = this.#collectors.indexOf(c);
			if (i !== -1) this.#collectors.splice(i, 1);
		};
	}

	// ---- collection ----

	get contentType(): string {
		return this.register.contentType;
	}

	/** Collects everything and returns the Prometheus text exposition. */
	async scrape(): Promise<string> {
		if (this.#closed) throw new ClosedError('metrics');
		// Concurrent scrapes share one collection.
		this.#refreshing ??= this.#refresh().finally(() => {
			this.#refreshing = null;
		});
		await this.#refreshing;
		return Registry.merge([this.register, getProcessRegistry()]).metrics();
	}

	async #refresh(): Promise<void> {
		this.#collectStreams();
		this.#collectChildren();
		for (const t of this.#queues.values()) this.framesDropped(t.component, t.read());
		this.#ingestConnections.reset();
		for (const p of PROTOCOLS) this.#ingestConnections.set({ protocol: p }, 0);
		for (const [count, protocol] of this.#connections) {
			try {
				this.#ingestConnections.inc({ protocol }, count());
			} catch (err) {
				this.#logger.warn({ err, protocol }, 'connection count failed');
			}
		}
		for (const c of [...this.#collectors]) {
			try {
				await c.fn();
			} catch (err) {
				this.#logger.warn({ err, collector: c.name }, 'metrics collector failed');
			}
		}
		await Promise.all([this.#collectWorkers(), this.#collectSfu()]);
	}

	#collectStreams(): void {
		const { registry } = this.#opts;
		const publishers: Record<PublisherProtocol, number> = { rtmp: 0, rtmps: 0, rtp: 0 };
		const viewers: Record<ViewerPath, number> = { webrtc: 0, hls: 0 };
		let live = 0;
		this.#streamViewers.reset();
		this.#publishStart.reset();
		for (const stream of registry.list()) {
			const pub = stream.publication;
			if (pub && !pub.ended) {
				live++;
				publishers[pub.protocol]++;
				this.#publishStart.set({ stream: stream.name, protocol: pub.protocol }, pub.startedAt / 1000);
				this.#accountPublication(pub);
			}
			const counts = stream.viewerCounts;
			for (const path of PATHS) {
				viewers[path] += counts[path];
				if (pub || counts[path] > 0) this.#streamViewers.set({ stream: stream.name, path }, counts[path]);
			}
		}
		this.#streamsLive.set(live);
		for (const p of PROTOCOLS) this.#publishers.set({ protocol: p }, publishers[p]);
		for (const p of PATHS) this.#viewers.set({ path: p }, viewers[p]);
	}

	#collectChildren(): void {
		const byKind = new Map<string, number>();
		let tracked = 0;
		for (const [proc, kind] of this.#processes) {
			if (!byKind.has(kind)) byKind.set(kind, 0);
			if (proc.child !== null && !proc.closed) {
				byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
				tracked++;
			}
		}
		this.#children.reset();
		// Children nobody labelled still show, so the kinds always add up to the total.
		byKind.set('other', Math.max(0, liveChildCount() - tracked));
		for (const [kind, n] of byKind) this.#children.set({ kind }, n);
	}

	async #collectWorkers(): Promise<void> {
		const pool = this.#opts.pool;
		if (pool.closed) return;
		let usage: Awaited<ReturnType<WorkerPool['resourceUsage']>> | null;
		let timer: NodeJS.Timeout | undefined;
		try {
			// A worker too busy to answer must not hold up the scrape.
			const late = new Promise<null>((resolve) => {
				timer = setTimeout(() => resolve(null), Math.max(1000, this.#opts.sfuStatsBudgetMs * 4));
			});
			usage = await Promise.race([pool.resourceUsage(), late]);
		} catch (err) {
			this.#logger.warn({ err }, 'cannot read mediasoup worker resource usage');
			return;
		} finally {
			clearTimeout(timer);
		}
		if (!usage) {
			this.#logger.warn('mediasoup workers did not report their resource usage in time');
			return;
		}
		this.#workerCpu.reset();
		this.#workerMaxRss.reset();
		this.#workerRss.reset();
		for (const { worker, pid, usage: u } of usage) {
			const w = String(worker);
			this.#workerCpu.inc({ worker: w, mode: 'user' }, u.ru_utime / 1000);
			this.#workerCpu.inc({ worker: w, mode: 'system' }, u.ru_stime / 1000);
			// getrusage reports ru_maxrss in KiB on Linux.
			this.#workerMaxRss.set({ worker: w }, u.ru_maxrss * 1024);
			const rss = rssBytes(pid);
			if (rss !== null) this.#workerRss.set({ worker: w }, rss);
		}
	}

	async #collectSfu(): Promise<void> {
		for (const [type, n] of Object.entries(this.#sfu.counts())) this.#sfuObjects.set({ type }, n);
		const prev = this.#sfuPolled;
		if (prev && performance.now() - prev.at < this.#opts.sfuStatsMaxAgeMs) return;
		const result = await this.#sfu.poll(this.#opts.sfuStatsBudgetMs);
		this.#sfuPolled = { at: performance.now(), result };
		this.#sfuPollSeconds.set(result.durationMs / 1000);
		this.#sfuPolledRatio.set(result.total === 0 ? 1 : result.polled / result.total);
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** Stops listening to the stream core and mediasoup. Idempotent. */
	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		const { registry } = this.#opts;
		registry.off('publish', this.#onPublish);
		registry.off('unpublish', this.#onUnpublish);
		registry.off('viewerJoin', this.#onViewerJoin);
		registry.off('streamRemoved', this.#onStreamRemoved);
		this.#sfu.close();
		this.#collectors.length = 0;
		this.#queues.clear();
		this.#processes.clear();
		this.#connections.clear();
		this.emit('close');
		this.removeAllListeners();
	}
}
