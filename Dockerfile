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
# The requirements bring the JS runtime too: pip puts deno in /usr/local/bin, the scripts folder where
# yt-dlp looks first. yt-dlp runs it with --no-code-cache --cached-only, so it needs no cache folder.
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
ENV HOME=/home/ytmp3 \
    TEMP_DIR=/data/tmp \
    STORAGE_DIR=/data/out
# The user runs the JS runtime that YouTube downloads need (a broken one stops the build here, not a job later).
RUN deno --version

CMD ["python", "-m", "tasks", "worker"]
