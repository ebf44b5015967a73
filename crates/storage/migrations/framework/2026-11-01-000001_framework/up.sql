-- Transaction tokens: which aggregate a create request made, and a digest of
-- the request, so a retry returns the stored aggregate and a reused token for
-- another request is refused. Written in the same transaction as the create.
CREATE TABLE tx_tokens (
    aggregate_kind TEXT NOT NULL,
    token UUID NOT NULL,
    aggregate_id UUID NOT NULL,
    fingerprint BYTEA NOT NULL CHECK (octet_length(fingerprint) = 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT tx_tokens_pkey PRIMARY KEY (aggregate_kind, token)
);

-- Retention cleanup deletes by age.
CREATE INDEX tx_tokens_created_at_idx ON tx_tokens (created_at);
