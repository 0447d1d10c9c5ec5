-- One row per accepted order. order_id is the idempotency key: the worker
-- inserts with ON CONFLICT (order_id) DO NOTHING, so a redelivered message
-- never creates a second row.
CREATE TABLE orders (
    id BIGSERIAL PRIMARY KEY,
    order_id UUID NOT NULL UNIQUE,
    user_id VARCHAR(64) NOT NULL,
    number_of_items INTEGER NOT NULL CHECK (number_of_items > 0),
    total_amount NUMERIC(12, 2) NOT NULL CHECK (total_amount >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
