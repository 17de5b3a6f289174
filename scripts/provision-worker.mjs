#!/usr/bin/env node
// Provisions the mediasoup worker binary for the pinned mediasoup version.
//
// npm 11 blocks dependency install scripts, so mediasoup's own postinstall never
// runs; this script is the root package's postinstall instead. Order of preference:
//   1. MEDIASOUP_WORKER_BIN, if set and runnable (left where it is; mediasoup reads
//      the env var itself at run time);
//   2. a worker already built for this exact version in .cache/mediasoup-worker/;
//   3. mediasoup's prebuilt worker from its GitHub release (short timeout);
//   4. a build from Debian 12's system libraries (meson + ninja, about 6 minutes on
//      2 cores), installing the apt packages first when running as root.
// The chosen worker is verified by starting a real mediasoup Worker with it, then
// copied to where mediasoup looks by default, so the app needs no env var.
//
// Usage: node scripts/provision-worker.mjs [--force-build] [--quiet]

import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(ROOT, 'package.json'));
const MEDIASOUP_DIR = path.dirname(require.resolve('mediasoup/package.json'));
const MEDIASOUP_VERSION = JSON.parse(
	fs.readFileSync(path.join(MEDIASOUP_DIR, 'package.json'), 'utf8'),
).version;
const PLATFORM = `${os.platform()}-${os.arch()}`;
const CACHE_DIR = path.join(ROOT, '.cache', 'mediasoup-worker', `${MEDIASOUP_VERSION}-${PLATFORM}`);
const CACHED_BIN = path.join(CACHE_DIR, 'mediasoup-worker');
const DEFAULT_BIN = path.join(MEDIASOUP_DIR, 'worker', 'out', 'Release', 'mediasoup-worker');
const PREBUILT_URL =
	`https://github.com/versatica/mediasoup/releases/download/${MEDIASOUP_VERSION}/` +
	`mediasoup-worker-${MEDIASOUP_VERSION}-${PLATFORM}.tgz`;
const DOWNLOAD_TIMEOUT_MS = Number(process.env.SUBSECOND_WORKER_DOWNLOAD_TIMEOUT_MS ?? 15000);

export const APT_PACKAGES = [
	'meson', 'ninja-build', 'pkg-config', 'g++', 'libssl-dev', 'libuv1-dev', 'libsrtp2-dev',
	'libusrsctp-dev', 'libabsl-dev', 'nlohmann-json3-dev',
];

const args = new Set(process.argv.slice(2));
const quiet = args.has('--quiet');

function log(msg) {
	if (!quiet) console.log(`[subsecond:worker] ${msg}`);
}

function fail(msg) {
	console.error(`[subsecond:worker] ERROR: ${msg}`);
	process.exit(1);
}

/** The worker exits with 41 when started without its env: proof that it links and runs. */
function runsHere(bin) {
	if (!bin || !fs.existsSync(bin)) return false;
	const res = spawnSync(bin, [], { env: {}, stdio: 'ignore', timeout: 10000 });
	return res.status === 41;
}

/** Starts a real mediasoup Worker with the binary in a child Node process. */
function verifyWithMediasoup(bin) {
	const script = `
		const ms = require(${JSON.stringify(MEDIASOUP_DIR)});
		ms.createWorker({ logLevel: 'error' }).then(async (w) => {
			const r = await w.createRouter({ mediaCodecs: [{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 }] });
			r.close(); w.close(); process.exit(0);
		}, (e) => { console.error(String(e)); process.exit(3); });`;
	const res = spawnSync(process.execPath, ['-e', script], {
		env: { ...process.env, MEDIASOUP_WORKER_BIN: bin },
		encoding: 'utf8',
		timeout: 30000,
	});
	if (res.status !== 0) {
		log(`worker ${bin} failed verification: ${(res.stderr || res.error || '').toString().trim()}`);
		return false;
	}
	return true;
}

function installToDefault(bin) {
	if (path.resolve(bin) === path.resolve(DEFAULT_BIN)) return;
	fs.mkdirSync(path.dirname(DEFAULT_BIN), { recursive: true });
	const tmp = `${DEFAULT_BIN}.tmp-${process.pid}`;
	fs.copyFileSync(bin, tmp);
	fs.chmodSync(tmp, 0o755);
	fs.renameSync(tmp, DEFAULT_BIN);
}

function storeInCache(bin) {
	fs.mkdirSync(CACHE_DIR, { recursive: true });
	const tmp = `${CACHED_BIN}.tmp-${process.pid}`;
	fs.copyFileSync(bin, tmp);
	fs.chmodSync(tmp, 0o755);
	fs.renameSync(tmp, CACHED_BIN);
}

async function tryDownload() {
	log(`trying mediasoup's prebuilt worker: ${PREBUILT_URL} (timeout ${DOWNLOAD_TIMEOUT_MS} ms)`);
	const ac = new AbortController();
	const timer = setTimeout(() => ac.abort(), DOWNLOAD_TIMEOUT_MS);
	let buf;
	try {
		const res = await fetch(PREBUILT_URL, { signal: ac.signal, redirect: 'follow' });
		if (!res.ok) {
			log(`prebuilt download answered ${res.status}; falling back to a local build`);
			return false;
		}
		buf = Buffer.from(await res.arrayBuffer());
	} catch (err) {
		log(`prebuilt download failed (${err?.cause?.code ?? err?.name ?? err}); falling back to a local build`);
		return false;
	} finally {
		clearTimeout(timer);
	}
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-worker-'));
	try {
		const tgz = path.join(dir, 'worker.tgz');
		fs.writeFileSync(tgz, buf);
		const untar = spawnSync('tar', ['-xzf', tgz, '-C', dir], { stdio: 'inherit' });
		const bin = path.join(dir, 'mediasoup-worker');
		if (untar.status !== 0 || !runsHere(bin)) {
			log('prebuilt worker does not run on this host; falling back to a local build');
			return false;
		}
		storeInCache(bin);
		return true;
	} finally {
		fs.rmSync(dir, { recursive: true, force: true });
	}
}

function missingAptPackages() {
	const res = spawnSync('dpkg-query', ['-W', '-f=${Package} ${db:Status-Status}\n', ...APT_PACKAGES], {
		encoding: 'utf8',
	});
	if (res.error) return APT_PACKAGES; // not a Debian system: let the user sort it out
	const installed = new Set(
		res.stdout.split('\n').filter((l) => l.endsWith(' installed')).map((l) => l.split(' ')[0]),
	);
	return APT_PACKAGES.filter((p) => !installed.has(p));
}

function ensureAptPackages() {
	const missing = missingAptPackages();
	if (missing.length === 0) return;
	const line = `apt-get install -y ${missing.join(' ')}`;
	if (typeof process.getuid === 'function' && process.getuid() === 0 && fs.existsSync('/usr/bin/apt-get')) {
		log(`installing build dependencies: ${line}`);
		const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
		let res = spawnSync('apt-get', ['install', '-y', '-q', ...missing], { stdio: 'inherit', env });
		if (res.status !== 0) {
			spawnSync('apt-get', ['update', '-q'], { stdio: 'inherit', env });
			res = spawnSync('apt-get', ['install', '-y', '-q', ...missing], { stdio: 'inherit', env });
		}
		if (res.status !== 0) fail(`could not install the worker's build dependencies (${line})`);
		return;
	}
	fail(
		'no mediasoup worker is available: the prebuilt download failed and building it needs ' +
			`these Debian packages. Install them and run npm install again:\n\n  sudo ${line}\n`,
	);
}

/** Reads `directory = X` from a meson wrap file. */
function wrapDirectory(wrapFile) {
	const m = /^directory\s*=\s*(.+)$/m.exec(fs.readFileSync(wrapFile, 'utf8'));
	return m ? m[1].trim() : null;
}

// Each subproject mediasoup's meson.build asks for, wrapped around the system library
// under the variable names it reads. `link_whole` gets an empty static library, since
// the real library is linked dynamically through the dependency.
const EMPTY_LIB = (name) => `${name} = static_library('${name}_empty', 'empty.c')`;
const SUBPROJECTS = {
	'openssl': {
		build: [
			"openssl_dep = dependency('openssl', version: '>= 3.0')",
			EMPTY_LIB('libcrypto_lib'),
			EMPTY_LIB('libssl_lib'),
		],
	},
	'nlohmann_json': { build: ["nlohmann_json_dep = dependency('nlohmann_json')"] },
	'libuv': {
		build: ["libuv_dep = dependency('libuv')", EMPTY_LIB('libuv')],
		options: ["option('build_tests', type: 'boolean', value: false)", "option('build_benchmarks', type: 'boolean', value: false)"],
	},
	'libsrtp2': {
		build: [
			"libsrtp2_dep = declare_dependency(dependencies: dependency('libsrtp2'), include_directories: include_directories('/usr/include/srtp2'))",
			EMPTY_LIB('libsrtp2'),
		],
		options: [
			"option('crypto-library', type: 'string', value: 'openssl')",
			"option('crypto-library-kdf', type: 'feature', value: 'disabled')",
			"option('tests', type: 'feature', value: 'disabled')",
		],
	},
	'usrsctp': {
		build: ["usrsctp_dep = dependency('usrsctp')", EMPTY_LIB('usrsctp')],
		options: ["option('sctp_build_programs', type: 'boolean', value: false)"],
	},
	'abseil-cpp': {
		build: [
			"absl_container_dep = dependency('absl_flat_hash_map', 'absl_flat_hash_set', 'absl_btree', 'absl_inlined_vector', 'absl_memory')",
			"absl_strings_dep = dependency('absl_strings')",
			"absl_types_dep = dependency('absl_optional')",
			EMPTY_LIB('absl_container_lib'),
		],
	},
	'catch2': { build: ['catch2_dep = declare_dependency()'] },
	'wingetopt': { build: ['wingetopt_dep = declare_dependency()', EMPTY_LIB('wingetopt_lib')] },
};

function run(cmd, cmdArgs, cwd) {
	log(`$ ${cmd} ${cmdArgs.join(' ')}`);
	const res = spawnSync(cmd, cmdArgs, { cwd, stdio: quiet ? 'ignore' : 'inherit' });
	if (res.status !== 0) fail(`${cmd} ${cmdArgs.join(' ')} failed (exit ${res.status ?? res.signal})`);
}

function buildFromSystemLibraries() {
	ensureAptPackages();
	const buildRoot = path.join(ROOT, '.cache', 'mediasoup-worker', `build-${MEDIASOUP_VERSION}`);
	fs.rmSync(buildRoot, { recursive: true, force: true });
	fs.mkdirSync(buildRoot, { recursive: true });
	const src = path.join(buildRoot, 'worker');
	fs.cpSync(path.join(MEDIASOUP_DIR, 'worker'), src, { recursive: true });

	// Debian 12 ships meson 1.0.1; nothing in this meson.build needs 1.1.
	const mesonBuild = path.join(src, 'meson.build');
	fs.writeFileSync(
		mesonBuild,
		fs.readFileSync(mesonBuild, 'utf8').replace(/meson_version\s*:\s*'>=\s*[\d.]+'/, "meson_version: '>= 0.63.0'"),
	);

	const subDir = path.join(src, 'subprojects');
	for (const wrap of fs.readdirSync(subDir).filter((f) => f.endsWith('.wrap'))) {
		const name = wrap.replace(/\.wrap$/, '');
		const spec = SUBPROJECTS[name];
		if (!spec) fail(`mediasoup ${MEDIASOUP_VERSION} asks for subproject '${name}', which this script cannot wrap`);
		const dir = wrapDirectory(path.join(subDir, wrap));
		if (!dir) fail(`cannot read the directory of ${wrap}`);
		const target = path.join(subDir, dir);
		fs.mkdirSync(target, { recursive: true });
		fs.writeFileSync(path.join(target, 'empty.c'), 'static int subsecond_empty_unit;\n');
		fs.writeFileSync(
			path.join(target, 'meson.build'),
			`project('${name}', 'c')\n${spec.build.join('\n')}\n`,
		);
		if (spec.options) fs.writeFileSync(path.join(target, 'meson_options.txt'), `${spec.options.join('\n')}\n`);
	}

	const out = path.join(buildRoot, 'out');
	run('meson', ['setup', '--wrap-mode=nodownload', '--buildtype=release', '-Db_ndebug=true', out, src], buildRoot);
	run('ninja', ['-C', out, 'mediasoup-worker'], buildRoot);
	const bin = path.join(out, 'mediasoup-worker');
	if (!runsHere(bin)) fail(`the worker built at ${bin} does not run`);
	storeInCache(bin);
	fs.rmSync(buildRoot, { recursive: true, force: true });
}

async function main() {
	const forceBuild = args.has('--force-build');
	const envBin = process.env.MEDIASOUP_WORKER_BIN;
	if (envBin && !forceBuild) {
		if (runsHere(envBin) && verifyWithMediasoup(envBin)) {
			// Also placed at the default path, so the app runs even when the variable is
			// not set at run time.
			installToDefault(envBin);
			log(`using MEDIASOUP_WORKER_BIN=${envBin}`);
			return;
		}
		log(`MEDIASOUP_WORKER_BIN=${envBin} is not a runnable mediasoup ${MEDIASOUP_VERSION} worker; ignoring it`);
	}

	if (!forceBuild && runsHere(CACHED_BIN) && verifyWithMediasoup(CACHED_BIN)) {
		installToDefault(CACHED_BIN);
		log(`using the cached worker ${path.relative(ROOT, CACHED_BIN)}`);
		return;
	}

	const started = Date.now();
	if (forceBuild || !(await tryDownload())) {
		log('building the worker from Debian system libraries (about 6 minutes on 2 cores)');
		buildFromSystemLibraries();
	}
	if (!verifyWithMediasoup(CACHED_BIN)) fail(`the worker at ${CACHED_BIN} fails to start a mediasoup Worker`);
	installToDefault(CACHED_BIN);
	log(`worker ready in ${((Date.now() - started) / 1000).toFixed(0)} s: ${path.relative(ROOT, CACHED_BIN)}`);
}

await main();
