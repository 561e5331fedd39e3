-- The observatory example: the schema `spool serve --schema` applies at
-- start. Every statement is idempotent, so it runs on every start.
CREATE TABLE IF NOT EXISTS observations (
    id          uuid PRIMARY KEY,
    target      text NOT NULL,
    telescope   text NOT NULL DEFAULT 'main',
    exposure_s  double precision,
    status      text NOT NULL DEFAULT 'planned',
    started_at  timestamptz,
    finished_at timestamptz,
    meta        jsonb
);

CREATE TABLE IF NOT EXISTS frames (
    id             uuid PRIMARY KEY,
    observation_id uuid NOT NULL REFERENCES observations (id),
    seq            integer NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    quality        real
);

CREATE TABLE IF NOT EXISTS instruments (
    code   text PRIMARY KEY,
    name   text NOT NULL,
    active boolean NOT NULL DEFAULT true
);

-- A table keyed by an integer the writer chooses (spool generates only uuid
-- and text keys).
CREATE TABLE IF NOT EXISTS targets (
    number        integer PRIMARY KEY,
    name          text NOT NULL,
    constellation text
);

-- High-rate weather samples for the telemetry lane
-- (spool serve --telemetry-table readings).
CREATE TABLE IF NOT EXISTS readings (
    id       uuid PRIMARY KEY,
    station  text NOT NULL,
    taken_at timestamptz NOT NULL,
    temp_c   double precision,
    humidity double precision
);
