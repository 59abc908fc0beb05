-- The web view's list index (`rollgate serve --ui-listen`, `rollgate ui`) reads only the
-- runs changed since it last looked; this index finds them without scanning every row
-- (whose checkpoints may fill overflow pages).
CREATE INDEX rollouts_by_updated ON rollouts (updated_ms);
