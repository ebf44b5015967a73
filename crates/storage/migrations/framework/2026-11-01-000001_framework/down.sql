DROP TABLE tx_tokens;
