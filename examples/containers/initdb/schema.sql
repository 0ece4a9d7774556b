-- Run once by the postgres image, when its volume is empty.
CREATE TABLE visits (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
