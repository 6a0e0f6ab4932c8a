-- 004: leave a tenth of every new posts page free, so the daily count updates are HOT updates
-- (same page, no index entries written: the updated columns are not indexed). Additive: a storage
-- parameter only; no row, column or index changes, existing pages stay as they are until rewritten,
-- and the website's queries see the same table. Safe to run twice. Takes SHARE UPDATE EXCLUSIVE,
-- which does not block reads or writes. With pages packed full (fillfactor 100), every changed post
-- was a new row version on another page plus four index insertions.
ALTER TABLE posts SET (fillfactor = 90);
