// `npm start`: load the config, start the server, stop it cleanly on a signal.
import { ConfigError, loadConfig } from './config/load.js';
import { SubsecondError } from './common/errors.js';
import { Server } from './server.js';

async function main(): Promise<void> {
	let server: Server;
	try {
		server = await Server.create(loadConfig());
	} catch (err) {
		if (err instanceof ConfigError || err instanceof SubsecondError) {
			console.error(`subsecond cannot start: ${err.message}`);
		} else {
			console.error('subsecond cannot start:', err);
		}
		process.exitCode = 1;
		return;
	}
	let stopping = false;
	const stop = (signal: NodeJS.Signals): void => {
		if (stopping) {
			server.logger.warn({ signal }, 'second signal: exiting now');
			process.exit(1);
		}
		stopping = true;
		server.logger.info({ signal }, 'signal received');
		// A stuck close must not keep the process alive forever.
		const force = setTimeout(() => {
			server.logger.error('shutdown took over 10 s; exiting');
			process.exit(1);
		}, 10_000);
		force.unref();
		server.close().then(
			() => {
				process.exitCode = 0;
			},
			(err: unknown) => {
				server.logger.error({ err }, 'shutdown failed');
				process.exitCode = 1;
			},
		);
	};
	process.on('SIGINT', stop);
	process.on('SIGTERM', stop);
	process.on('unhandledRejection', (err) => {
		server.logger.error({ err }, 'unhandled rejection');
	});
}

await main();
