-- The inbox: which consumer handled which event, written in the unit of
-- work that handled it, so that a redelivered event has no second effect.
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id UUID NOT NULL,
    handled_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT inbox_pkey PRIMARY KEY (consumer, event_id)
);
