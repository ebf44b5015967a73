-- The product catalog: a reference set that imports replace whole, in one
-- transaction. Ids derive from SKUs, so a product keeps its id across imports.
CREATE TABLE products (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL CHECK (version >= 1),
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    CONSTRAINT products_sku_key UNIQUE (sku)
);
