# The control plane (web, worker, beat). No torch: the `train` extra is for the GPU pod image
# (gpu_worker/Dockerfile).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY config ./config
COPY core ./core
COPY accounts ./accounts
COPY training ./training
COPY billing ./billing
COPY validation ./validation
COPY artifacts ./artifacts
COPY finetuning ./finetuning
COPY dashboard ./dashboard
COPY gpu_worker ./gpu_worker
COPY templates ./templates
COPY manage.py ./
RUN pip install . && python manage.py collectstatic --noinput

RUN useradd --create-home --uid 1000 app && mkdir -p /app/var && chown -R app /app/var
USER app
EXPOSE 8000
# The web processes as `manage.py runall` starts them: WEB_WORKERS daphne processes sharing the
# port, each with a database connection pool (docs/performance.md).
CMD ["python", "manage.py", "runall", "--only", "web", "--no-migrate", "--host", "0.0.0.0", "--port", "8000"]
