-- Airflow's metadata database, beside the pipeline's own (POSTGRES_DB=txcat) on the same server.
-- The postgres image runs the files in /docker-entrypoint-initdb.d as POSTGRES_USER, and only
-- when it initialises an empty data volume: to rerun it, `docker compose down -v` first.
CREATE DATABASE airflow;
