import { deltaOf } from '../../server/metrics/index.js';
import type { Metrics } from '../../server/metrics/index.js';
import { DROP_REASONS } from './ingest.js';
import type { RtpIngest } from './ingest.js';

/**
 * Feeds the ingest's counters to Prometheus: open sessions, packets lost
 * upstream of the SFU, and dropped input by reason. Counters are read at each
 * scrape and turned into increments, closed sessions included.
 */
export function reportRtpIngestMetrics(ingest: RtpIngest, metrics: Metrics): void {
	metrics.trackConnections('rtp', () => ingest.sessions().length);
	let totals = ingest.totals();
	const read = (): void => {
		totals = ingest.totals();
	};
	const lostVideo = deltaOf(() => totals.lost.video);
	const lostAudio = deltaOf(() => totals.lost.audio);
	const dropped = DROP_REASONS.map((reason) => ({ reason, delta: deltaOf(() => totals.dropped[reason]) }));
	const badFrames = deltaOf(() => totals.framesDropped);
	metrics.addCollector('rtp-ingest', () => {
		read();
		metrics.rtpPacketsLost('ingest', 'video', lostVideo());
		metrics.rtpPacketsLost('ingest', 'audio', lostAudio());
		for (const d of dropped) metrics.ingestError('rtp', d.reason, d.delta());
		metrics.framesDropped('rtp-depacketizer', badFrames());
	});
}
