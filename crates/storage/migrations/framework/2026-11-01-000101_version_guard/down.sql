DROP FUNCTION storage_expect_one(BIGINT);
