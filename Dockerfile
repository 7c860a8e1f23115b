# The daemon's image: `docker build -t itsm-bridge .` (docs/daemon.md, "Container").
#   docker run -d -p 8765:8765 -v /etc/itsm-bridge:/etc/itsm-bridge:ro \
#     -v itsm-bridge-data:/var/lib/itsm-bridge -e BRIDGE_API_TOKEN=... itsm-bridge
# The configuration must listen on all interfaces (server.listen: "0.0.0.0:8765") and keep
# its database on the volume (sqlite:////var/lib/itsm-bridge/bridge.db) or in PostgreSQL.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY plugins ./plugins
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/itsm-bridge --create-home itsm-bridge
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER itsm-bridge
WORKDIR /var/lib/itsm-bridge
ENV ITSM_BRIDGE_CONFIG=/etc/itsm-bridge/itsm-bridge.yaml \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/itsm-bridge"]
EXPOSE 8765
# `docker stop` sends SIGTERM and waits 10 s: the daemon exits 0 within that (shutdown_seconds 8)
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4)"]
ENTRYPOINT ["itsm-bridge"]
CMD ["run", "--log-format", "json"]
