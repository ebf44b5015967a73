-- What a unit of work run with a caller's key answered
-- (`UnitOfWork::run_once`). The key itself is claimed in `tx_tokens`
-- (kind `$unit`) as the unit's first statement; the answer is inserted
-- with its COMMIT. Both are plain inserts, so units with different keys
-- never read each other's rows (no SERIALIZABLE conflict between them).
CREATE TABLE unit_answers (
    token UUID PRIMARY KEY,
    answer JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- Retention cleanup deletes by age.
CREATE INDEX unit_answers_created_at_idx ON unit_answers (created_at);
