-- The schema, applied once per database; every run is counted (the web page shows the count),
-- so that a test can tell a migration that ran once from one that ran twice.
CREATE TABLE IF NOT EXISTS migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS migration_runs (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
INSERT INTO migration_runs DEFAULT VALUES;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM migrations WHERE name = '0001_visits') THEN
    CREATE TABLE visits (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
    INSERT INTO migrations (name) VALUES ('0001_visits');
  END IF;
END $$;
