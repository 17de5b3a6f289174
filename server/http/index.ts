export { HttpServer } from './http-server.js';
export type { HttpServerEvents, HttpServerOptions } from './http-server.js';
