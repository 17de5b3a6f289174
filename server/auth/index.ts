export { publishKeyGuard, signPublishKey } from './publish-keys.js';
export type { PublishKeyOptions } from './publish-keys.js';
export { claimsGrantStream, signViewerToken, viewerJwtVerifier } from './viewer-jwt.js';
export type { SignViewerTokenOptions, ViewerJwtOptions, ViewerVerifier } from './viewer-jwt.js';
