# Koppel gateway / worker image. One image, two roles:
#   docker run IMAGE                          -> koppel serve (receiver on :8000)
#   docker run IMAGE koppel worker            -> RQ worker
# Give REDIS_URL and KOPPEL_CONFIG (mount the TOML), and the secrets it names as env vars.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY handlers handlers
COPY connectors connectors
COPY transforms transforms
COPY workers workers
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# redis-server only serves the embedded default (no REDIS_URL); production sets REDIS_URL.
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 koppel \
 && install -d -m 700 -o koppel -g koppel /home/koppel/data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER koppel
WORKDIR /home/koppel
ENV KOPPEL_DATA_DIR=/home/koppel/data PYTHONUNBUFFERED=1
# Koppel's data on the host, not in the container's writable layer (lost with the container): the embedded
# Redis's files and the gateway's local journal live under it. Mount a named volume or a host directory here.
VOLUME ["/home/koppel/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["koppel", "serve", "--host", "0.0.0.0", "--port", "8000"]
