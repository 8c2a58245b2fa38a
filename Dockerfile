# The service image: the API and the workers are the same image with different commands.
# Stage 1 compiles the TypeScript with the dev dependencies; the image that runs holds the
# production dependencies and the compiled dist/ only.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts off here: `prepare` (the build) needs the sources, copied next.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would try to build, and the production dependencies need no install scripts.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --from=build /app/dist ./dist
COPY scripts ./scripts
COPY cli/hr.mjs ./cli/hr.mjs
# Inside a container 127.0.0.1 is the container alone: listen on every interface, and let the
# published port decide who reaches it (docker-compose.yml publishes on the host's loopback).
ENV DATA_DIR=/data PORT=3000 HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# node itself is PID 1, so SIGTERM reaches the graceful shutdown; add --api or --worker for one side.
CMD ["node", "--enable-source-maps", "dist/main.js"]
