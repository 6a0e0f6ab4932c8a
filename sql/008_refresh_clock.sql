-- 008: when an account's next full refresh is due (docs/request-economy.md, "The full refresh").
-- Additive only.

-- The UTC date of the account's newest complete window feed taken for a reason of its own (its
-- postsCount changed, a window post went missing, its refresh was due, its window is long;
-- ds::restarts_refresh_clock). Its next full refresh is due FULL_REFRESH_DAYS after it. NULL
-- until there is one: the refresh then falls on the account's hash day. ds-load writes it, the
-- newest date winning; ds-select-users carries it as the user record's refreshClock.
ALTER TABLE ds_user_state ADD COLUMN IF NOT EXISTS refresh_clock_date DATE;
