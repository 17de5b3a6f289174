# syntax=docker/dockerfile:1
#
# subsecond in two stages:
#   build    installs the dependencies and provisions the mediasoup worker binary;
#   runtime  the slim image that runs the server (ffmpeg included).
#
#   docker build --target runtime -t subsecond .
#   docker compose up -d --build          (see docker-compose.yml and docs/deploy.md)

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV DEBIAN_FRONTEND=noninteractive

COPY package.json package-lock.json .npmrc ./
COPY scripts/provision-worker.mjs scripts/
# Dependency install scripts stay off whatever npm the base image ships (the project
# relies on npm 11's allowScripts): esbuild's is run on its own, and the mediasoup
# worker comes from our provisioning script, which first downloads mediasoup's
# prebuilt worker (image builds have internet access) and otherwise builds it from
# Debian 12's libraries, installing the build packages it needs.
RUN npm ci --ignore-scripts --no-audit --no-fund \
	&& npm rebuild esbuild \
	&& node scripts/provision-worker.mjs \
	&& npm prune --omit=dev --no-audit --no-fund \
	&& rm -rf .cache /root/.npm

COPY . .
# The web client bundle, once the project has a build step.
RUN npm run build --if-present


FROM ${NODE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# ffmpeg (libx264, libopus) for the transcoders; tini reaps what the server spawns.
# The shared libraries are those of a worker built from Debian's libraries (the
# prebuilt worker needs none of them).
RUN apt-get update \
	&& apt-get install -y --no-install-recommends \
		ffmpeg tini ca-certificates \
		libssl3 libuv1 libsrtp2-1 libusrsctp2 libabsl20220623 \
	&& rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV NODE_ENV=production \
	SUBSECOND_HLS_DIR=/var/lib/subsecond/hls \
	SUBSECOND_LOG_FORMAT=json
RUN mkdir -p /var/lib/subsecond/hls && chown -R node:node /var/lib/subsecond
COPY --from=build --chown=node:node /app /app

USER node
VOLUME ["/var/lib/subsecond/hls"]
# HTTP(S), RTMP, RTMPS, and the WebRTC port of worker 0 (worker i uses 40000 + i).
EXPOSE 8080/tcp 1935/tcp 1936/tcp 40000/udp 40000/tcp

# Reads the port from SUBSECOND_HTTP_PORT; with TLS on, the check speaks HTTPS
# without verifying the certificate (it only asks the local process if it is up).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
	CMD ["node", "-e", "const s=process.env.SUBSECOND_HTTP_TLS_CERT?'https':'http';process.env.NODE_TLS_REJECT_UNAUTHORIZED='0';fetch(s+'://127.0.0.1:'+(process.env.SUBSECOND_HTTP_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "--import", "tsx", "server/main.ts"]
