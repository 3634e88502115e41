-- Runs once, when the compose file's Postgres starts on an empty volume: one database for the
-- coordinator's decision log and one for each example participant (each keeps its own state).
CREATE DATABASE coordinator;
CREATE DATABASE inventory;
CREATE DATABASE payments;
CREATE DATABASE shipping;
