DROP FUNCTION storage_expect_claim(BIGINT, TEXT, UUID);
