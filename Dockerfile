# Grace server image. Build from the repository root:
#   docker build -t grace:0.1.0 .
# Run a standalone node (data in the volume at /data):
#   docker run -d --name grace -p 8848:8848 -v grace-data:/data grace:0.1.0
# A cluster: deploy/compose/ and deploy/kubernetes/, and deploy/README.md.
#
# Settings are the GRACE_* environment variables (or flags after the image name), as in
# docs/operations.md. Pass the cluster secret as GRACE_CLUSTER_SECRET, never as a flag, and
# never bake it into an image. The HEALTHCHECK reads GRACE_PORT: change the port with the
# variable, not with --port.

ARG NODE_IMAGE=node:20-slim

# ---- build: install every dependency, generate the protobuf code, compile -------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the package's own prepare script would build before the sources are here
# (and builds the tests too). The build below is `npm run build`: gen-proto, then tsc.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY proto ./proto
COPY scripts ./scripts
COPY src ./src
# tsconfig.json includes test/, which is not in the context: only src/ is compiled.
RUN npm run build

# ---- production dependencies only ----------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts are needed: LevelDB's binding (classic-level) ships prebuilt binaries for
# linux x64 and arm64. The require() fails the build on a platform without one.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && node -e "require('classic-level')" \
 && npm cache clean --force

# ---- runtime ---------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    GRACE_HOST=0.0.0.0 \
    GRACE_PORT=8848 \
    GRACE_DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY package.json ./
COPY bin ./bin
COPY proto ./proto
COPY deploy/docker/healthcheck.mjs ./deploy/docker/healthcheck.mjs
# The node images come with an unprivileged user `node` (uid 1000, gid 1000).
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
# 8848: client HTTP API. 9848: peer traffic (Raft, Distro) when the node is started with
# GRACE_MEMBERS listing <this node>=<host>:9848; a standalone node does not open it.
EXPOSE 8848 9848
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "/app/deploy/docker/healthcheck.mjs", "/healthz"]
# Grace is PID 1 and handles SIGTERM itself (drains requests, closes LevelDB, exits 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/bin/grace.js"]
