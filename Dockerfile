# The project image: the `python -m pipeline` command line, the ML API (uvicorn) and Apache
# Airflow 3 (the "airflow" extra), so every service of docker-compose.yml runs the same code.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    AIRFLOW_HOME=/opt/airflow

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app \
    && mkdir -p /opt/airflow/logs \
    && chown -R app:app /opt/airflow

WORKDIR /app

# Dependencies first, against empty packages, so that editing the code does not reinstall them.
COPY pyproject.toml ./
RUN mkdir pipeline ml_api \
    && touch pipeline/__init__.py ml_api/__init__.py \
    && pip install ".[airflow]" \
    && rm -rf pipeline ml_api

COPY pipeline ./pipeline
COPY ml_api ./ml_api
RUN pip install --no-deps --force-reinstall . \
    && rm -rf build ./*.egg-info

COPY dags ./dags
COPY data ./data

USER app
EXPOSE 8000 8080 9108
CMD ["python", "-m", "pipeline", "--help"]
