-- Roles and databases of the compose stack. The postgres image runs the files of
-- /docker-entrypoint-initdb.d once, as the superuser `postgres`, and only when it initialises an
-- empty data volume: after changing this file, `make clean` (docker compose down --volumes).
-- The passwords are compose secrets (files), read with psql's backquotes: never on a command line.
--
--   txcat_owner    owns the database txcat and its schema: the migrations run as this role
--   txcat_app      the pipeline (consumer, Airflow tasks): DML on the pipeline's tables, granted
--                  by the migration that creates them; no DDL, no superuser
--   txcat_analyst  read-only: SELECT on the view categorised_transactions and on dead_letters,
--                  granted by the migrations
--   airflow        owns Airflow's metadata database, and nothing of the pipeline's
\set ON_ERROR_STOP on
\set owner_password `cat /run/secrets/txcat_owner_password`
\set app_password `cat /run/secrets/txcat_app_password`
\set analyst_password `cat /run/secrets/txcat_analyst_password`
\set airflow_password `cat /run/secrets/airflow_db_password`

CREATE ROLE txcat_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE txcat_app LOGIN PASSWORD :'app_password';
CREATE ROLE txcat_analyst LOGIN PASSWORD :'analyst_password';
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';

CREATE DATABASE txcat OWNER txcat_owner;
CREATE DATABASE airflow OWNER airflow;

-- Nobody else may connect to either database (PUBLIC has CONNECT and TEMPORARY by default).
REVOKE ALL ON DATABASE txcat, airflow FROM PUBLIC;
-- The pipeline stages its bulk upserts in temporary tables.
GRANT CONNECT, TEMPORARY ON DATABASE txcat TO txcat_app;
GRANT CONNECT ON DATABASE txcat TO txcat_analyst;
