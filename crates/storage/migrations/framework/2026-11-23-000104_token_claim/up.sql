-- The token claim of a create sent as one statement with its inserts:
-- `WITH storage_w0 AS (INSERT INTO tx_tokens .. ON CONFLICT DO NOTHING
-- RETURNING 1), storage_w1 AS (<insert> RETURNING 1), .. SELECT
-- ARRAY[storage_expect_claim((SELECT count(*) FROM storage_w0), kind,
-- token), ..]`. A token claimed before fails the statement before any
-- insert runs, and the error says what the token made (the aggregate's id
-- and the request's fingerprint, in hex, in DETAIL), so that a replay
-- needs no lookup of its own. The message is ours and never translated.
CREATE FUNCTION storage_expect_claim(claimed BIGINT, kind TEXT, claimed_token UUID)
RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    made TEXT;
BEGIN
    IF claimed = 1 THEN
        RETURN claimed;
    END IF;
    -- A statement of its own: under READ COMMITTED it sees the claim that
    -- the INSERT waited for and found committed.
    SELECT aggregate_id::text || ' ' || encode(fingerprint, 'hex') INTO made
        FROM tx_tokens WHERE aggregate_kind = kind AND token = claimed_token;
    RAISE EXCEPTION 'storage: token claimed before'
        USING ERRCODE = 'SV002', DETAIL = coalesce(made, '');
END
$$;
