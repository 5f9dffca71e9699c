# syntax=docker/dockerfile:1
#
# One image for every telemetry-jobs job. Nothing in it starts a job by itself: each Cloud Run job
# sets `command` to ["/nodejs/bin/node", "/app/dist/<job>.mjs"] and `args` to the run options, so
# `gcloud run jobs execute retention --args=--dry-run --wait` replaces only the options.
#
#   docker build -t telemetry-jobs .
#   docker run --rm -e DATABASE_URL=... -e TELEMETRY_JOBS_CONFIG_JSON='{...}' \
#     telemetry-jobs /app/dist/partition-manager.mjs --dry-run
#
# Signals: node runs as PID 1 (no shell, no init). PID 1 gets no default signal handlers from the
# kernel, but every entrypoint installs its own SIGTERM/SIGINT handlers (jobs/process.ts): the first
# SIGTERM stops the job between actions and it exits 1, a second one exits at once. Cloud Run sends
# SIGTERM on cancel or task timeout and SIGKILL 10 s later; a killed run leaves the database valid.

ARG BUILD_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

# 1. Bundles. The full dependency tree (esbuild is a devDependency; its platform binary is an
#    optional dependency, so --omit=optional is not possible here). Install scripts are not needed:
#    esbuild finds its binary package without its postinstall. This stage is thrown away.
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/build.mjs scripts/
COPY jobs/ jobs/
COPY shared/ shared/
COPY migrations/ migrations/
RUN npm run build

# 2. Production dependencies only: no devDependencies, and none of the optional PostgreSQL server
#    binaries (postgres-bin-14..18, used by the tests). The bundles keep these packages external.
FROM ${BUILD_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
  && npm cache clean --force

# 3. Runtime: distroless Node.js 24 (no shell, no package manager), user nonroot (65532).
FROM ${RUNTIME_IMAGE}
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/package.json ./package.json
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
USER nonroot
ENTRYPOINT ["/nodejs/bin/node"]
CMD ["/app/dist/cli.mjs", "--help"]
