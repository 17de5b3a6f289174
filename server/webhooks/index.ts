// Webhooks: the publish guard and the unpublish / viewer notifications.
export { Webhooks, webhookSignature } from './webhooks.js';
export type {
	NotificationEvent,
	NotificationPayload,
	PublishHookPayload,
	UnpublishPayload,
	ViewerPayload,
	WebhookMetrics,
	WebhooksEvents,
	WebhooksOptions,
} from './webhooks.js';
