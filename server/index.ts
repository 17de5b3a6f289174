// The public face of the server package: build a Server from a Config.
export { Server } from './server.js';
export type { Component, ServerEvents, ServerOptions } from './server.js';
export { ConfigError, configSchema, defaultConfig, loadConfig, maskSecrets } from './config/index.js';
export type { Config, ConfigInput } from './config/index.js';
export type { ApiInfo } from './http/api.js';
