# One image for every part: the workers (python -m tasks worker -Q ...) and the bots (python -m bots telegram|discord).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
# Extra pip packages for one image variant (docker-compose's flower service adds "flower").
ARG EXTRA_PACKAGES=""
RUN if [ -n "$EXTRA_PACKAGES" ]; then pip install $EXTRA_PACKAGES; fi

COPY . .

# Not root (Celery warns about it); /data is the shared volume for temp and output files.
RUN useradd --create-home --uid 1000 ytmp3 \
    && mkdir -p /data/tmp /data/out \
    && chown -R ytmp3:ytmp3 /data
USER ytmp3
ENV TEMP_DIR=/data/tmp \
    STORAGE_DIR=/data/out

CMD ["python", "-m", "tasks", "worker"]
