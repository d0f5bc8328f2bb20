# artifact-relay: the image the GitLab CI/CD component's jobs run in.
#
# Both stages use the same base, so the image builds offline from any local image that carries node and
# npm (scripts/image/make-base.sh makes one; CI builds FROM the official node image).
#   podman build --build-arg NODE_IMAGE=localhost/artifact-relay-base:bookworm-node24 -t artifact-relay .
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
ARG VERSION=""
# Only for networks that intercept TLS: a CA bundle mounted into the build (scripts/image/build.sh does
# `-v $NODE_EXTRA_CA_CERTS:/run/host-ca.crt`). A build argument, so it never reaches the final image.
ARG NODE_EXTRA_CA_CERTS=""
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json component.yml ./
COPY scripts ./scripts
COPY src ./src
RUN ARTIFACT_RELAY_VERSION="${VERSION}" npm run build \
 && mkdir -p /out \
 && cp dist/artifact-relay.mjs /out/ \
 && (cp dist/*.LEGAL.txt /out/ 2>/dev/null || true) \
 && node /out/artifact-relay.mjs --version

FROM ${NODE_IMAGE}
ARG VERSION="dev"
LABEL org.opencontainers.image.title="artifact-relay" \
      org.opencontainers.image.description="GitLab CI/CD component: fetch the exact upstream pipeline's job artifacts, unpack them safely, and clean old artifacts up by policy." \
      org.opencontainers.image.source="https://gitlab.com/artifact-relay/artifact-relay" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
# One self-contained bundle (no node_modules) plus the licence notices of the code bundled into it.
COPY --from=build /out/ /usr/local/lib/artifact-relay/
COPY LICENSE.md /usr/local/lib/artifact-relay/LICENSE.md
# A non-root user (uid 1000, group 0) for jobs. The node images already have uid 1000 (node); other bases
# get one named relay. Group 0 plus group-writable HOME also suits platforms that run arbitrary uids.
# The command is a small wrapper: a 1 MB young generation keeps peak RSS flat on archives with many entries
# (measured by npm run bench: 161 -> 118 MB at 500 MB / 21k entries, 210 -> 163 MB at 2 GB / 83k entries).
# NODE_COMPILE_CACHE (Node 22.1+; older Node ignores it) points at the V8 code cache made below, so a start does not
# parse the 1 MB bundle again. MALLOC_MMAP_THRESHOLD_ fixes glibc's mmap threshold at its default 128 KiB: left
# dynamic, the first large buffer freed raises it (up to 32 MiB, and the trim threshold to twice that), after which
# buffers of 128 KiB up to that size are carved from the heap among the socket chunks and their memory stays resident
# (fetch of many83k: Node 20 118 -> 106-109 MB, Node 24 142 -> 126-128 MB). MALLOC_ARENA_MAX=1: one malloc arena
# instead of one per thread (two unpacking threads, libuv's pool, V8's), each of which kept 1-1.6 MB of freed memory
# resident (fetch of many83k on Node 24: 119-129 -> 114-120 MB; small: no slower). Set here, not as ENV, so
# processes of the job's own script are not affected. Only --max-semi-space-size goes on node's command line: a flag
# that enters V8's flag hash (--expose-gc, --no-turbofan, --no-short-builtin-calls) makes Node's code cache for its
# own modules unusable, and a fetch then compiles http, crypto, stream ... from source. A command sets those three
# at run time instead, once its modules are loaded (src/runtime/v8-flags.ts: small 0.535 -> 0.51 s, 30 ms less CPU).
RUN printf '#!/bin/sh\nMALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=131072 NODE_COMPILE_CACHE=/usr/local/lib/artifact-relay/compile-cache exec node --max-semi-space-size=1 /usr/local/lib/artifact-relay/artifact-relay.mjs "$@"\n' >/usr/local/bin/artifact-relay \
 && chmod 755 /usr/local/bin/artifact-relay \
 && if ! getent passwd 1000 >/dev/null; then \
      (useradd --uid 1000 --gid 0 --home-dir /home/relay --create-home --shell /bin/sh relay 2>/dev/null \
       || (echo 'relay:x:1000:0:artifact-relay:/home/relay:/bin/sh' >>/etc/passwd && mkdir -p /home/relay)); \
    fi \
 && home="$(getent passwd 1000 | cut -d: -f6)" && chown -R 1000:0 "$home" && chmod -R g=u "$home" \
 && mkdir /usr/local/lib/artifact-relay/compile-cache && chown 1000:0 /usr/local/lib/artifact-relay/compile-cache
# The compile cache, made by running the command as the job's user and as root: Node keeps one folder per uid
# (v24.x-x64-<hash>-<uid>). Then it is made read-only, so a run only reads it. A run under another uid, Node or bundle
# finds no entry and compiles as without a cache (Node says nothing when it cannot write one).
USER 1000:0
RUN artifact-relay --version && artifact-relay --help >/dev/null
USER 0:0
RUN artifact-relay --version && artifact-relay --help >/dev/null \
 && chown -R 0:0 /usr/local/lib/artifact-relay/compile-cache && chmod -R a+rX,go-w /usr/local/lib/artifact-relay/compile-cache
USER 1000:0
# GitLab Runner runs `sh`/`bash` with the job script in the image: no entrypoint may swallow it.
ENTRYPOINT []
CMD ["artifact-relay", "--help"]
