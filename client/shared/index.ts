// The viewer contract shared by the server and both viewer libraries.
export * from './protocol.js';
export { Emitter } from './emitter.js';
export { SignalingError, unwrapAck } from './errors.js';
