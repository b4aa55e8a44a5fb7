#!/bin/sh
# Runs once, when the postgis container initialises an empty data directory: create the
# login roles the services use, with their passwords from the environment (deploy/.env).
# `eomatch db migrate` (the migrate service) then installs pgSTAC and grants these roles
# exactly the privileges they need. Passwords are passed as psql variables, never as SQL text.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v api_pw="$EOMATCH_API_PASSWORD" \
  -v reader_pw="$EOMATCH_READER_PASSWORD" \
  -v ingest_pw="$EOMATCH_INGEST_PASSWORD" <<'SQL'
CREATE ROLE eomatch_api LOGIN PASSWORD :'api_pw';
CREATE ROLE eomatch_reader LOGIN PASSWORD :'reader_pw';
CREATE ROLE eomatch_ingest LOGIN PASSWORD :'ingest_pw';
SQL
