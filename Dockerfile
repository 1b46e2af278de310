# The project image: the `python -m pipeline` command line, the ML API (uvicorn) and Apache
# Airflow 3 (the "airflow" extra), so every service of docker-compose.yml runs the same code.
# Every third-party package comes from uv.lock, hashes checked: the versions `make test` tested.

# The image's requirements: the product and the airflow extra of uv.lock (no dev, no embedded).
FROM python:3.11.14-slim-bookworm AS requirements
WORKDIR /src
COPY pyproject.toml uv.lock ./
# uv at the version uv.lock pins for itself (the same line `make install` reads).
RUN UV_VERSION="$(sed -n '/^name = "uv"$/{n;s/^version = "\(.*\)"$/\1/p;}' uv.lock)" \
    && test -n "$UV_VERSION" \
    && pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
        "uv==${UV_VERSION}" \
    && uv export --frozen --extra airflow --no-emit-project --no-header \
        --quiet --output-file /requirements.txt

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

# Dependencies first, so that editing the code does not reinstall them. --require-hashes: every
# package pinned and checked; nothing outside the lock can be pulled in.
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN pip install --require-hashes -r /tmp/requirements.txt && rm /tmp/requirements.txt

# The project itself, without resolving anything again.
COPY pyproject.toml ./
COPY pipeline ./pipeline
COPY ml_api ./ml_api
RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info

COPY deploy/image/txcat-entrypoint deploy/image/txcat-check-secrets /usr/local/bin/
COPY dags ./dags
COPY data ./data

USER app
EXPOSE 8000 8080 9108
ENTRYPOINT ["txcat-entrypoint"]
CMD ["python", "-m", "pipeline", "--help"]
