FROM python:3.11-slim

WORKDIR /app
# Dependencies first, pinned by the same constraints file as `make up`, so code edits reuse this layer.
COPY pyproject.toml constraints.txt README.md ./
COPY shared ./shared
COPY worker ./worker
RUN pip install --no-cache-dir -c constraints.txt .
COPY config ./config

# Not root: a Celery worker should not run as root, and the data folder is all it writes.
RUN useradd --create-home --uid 1000 ingest && mkdir -p /srv/data /srv/seeds && chown ingest /srv/data
USER ingest
# The language model unpacked into the user's cache now, not by every container at its first start.
RUN python -c "from shared import language; language.load()"
ENV INGEST_CONFIG=/app/config/settings.toml \
    INGEST_DATA_DIR=/srv/data \
    INGEST_SEEDS_DIR=/srv/seeds

CMD ["ingest", "up"]
