export { configSchema } from './schema.js';
export type { Config, ConfigInput } from './schema.js';
export { ConfigError, defaultConfig, envVarNames, loadConfig, maskSecrets } from './load.js';
export type { LoadConfigOptions } from './load.js';
