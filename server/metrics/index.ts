// Prometheus metrics: the Metrics class (collectors and hooks) and GET /metrics.
export { Metrics, deltaOf } from './metrics.js';
export type {
	DropCounter,
	KeyframeRequestOutcome,
	MetricsEvents,
	MetricsOptions,
	WebhookEvent,
	WebhookResult,
} from './metrics.js';
export { metricsRoutes } from './route.js';
export type { MetricsRouteOptions } from './route.js';
export { SfuStats } from './sfu-stats.js';
export type { MediaKind, RtpDirection, SfuObjectCounts, SfuPollResult, SfuStatsSink } from './sfu-stats.js';
