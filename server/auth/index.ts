export { publishKeyGuard, signPublishKey } from './publish-keys.js';
export type { PublishKeyOptions } from './publish-keys.js';
