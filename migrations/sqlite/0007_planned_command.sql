-- The argv a change runs (JSON; 'null' where the simulator stands in), fixed when it is
-- requested, so its reviewers approve exactly that: a change whose action's command has changed
-- since is refused at approval. NULL: requested before commands were recorded.
ALTER TABLE changes ADD COLUMN command TEXT;
