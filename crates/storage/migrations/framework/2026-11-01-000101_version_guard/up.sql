-- The version check of a write sent in one flight with its COMMIT: the root
-- row's update runs as `WITH root AS (UPDATE .. RETURNING 1) SELECT
-- storage_expect_one(count(*)) FROM root`, so that a root that matched no
-- row (a concurrent writer won) fails the transaction, and the COMMIT
-- queued behind the child writes rolls them back. The client reads the
-- message, which is ours and never translated, as a version miss.
CREATE FUNCTION storage_expect_one(matched BIGINT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    IF matched <> 1 THEN
        RAISE EXCEPTION 'storage: version miss (% rows matched)', matched
            USING ERRCODE = 'SV001';
    END IF;
    RETURN matched;
END
$$;
