-- 001: the original system's schema (DESIGN §2), exactly as the original README's SQL creates it.
-- IF NOT EXISTS everywhere: on a database the original created, this migration changes nothing.
CREATE TABLE IF NOT EXISTS users (
    did VARCHAR(255) PRIMARY KEY,
    handle VARCHAR(255) UNIQUE NOT NULL,
    "displayName" VARCHAR(255),
    avatar TEXT,
    created_at TIMESTAMPTZ DEFAULT now(),
    updated_at TIMESTAMPTZ DEFAULT now(),
    last_active TIMESTAMPTZ DEFAULT now(),
    skip_user BOOLEAN DEFAULT false
);

CREATE TABLE IF NOT EXISTS posts (
    uri VARCHAR(500) PRIMARY KEY,
    did VARCHAR(255) REFERENCES users(did) ON DELETE CASCADE,
    likes INTEGER DEFAULT 0,
    replies INTEGER DEFAULT 0,
    quotes INTEGER DEFAULT 0,
    reposts INTEGER DEFAULT 0,
    "createdAt" TIMESTAMPTZ NOT NULL,
    "updatedAt" TIMESTAMPTZ DEFAULT now()
);

CREATE TABLE IF NOT EXISTS snapshots (
    uuid UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    did VARCHAR(255) REFERENCES users(did) ON DELETE CASCADE,
    date DATE NOT NULL,
    followers INTEGER,
    following INTEGER,
    posts INTEGER,
    likes INTEGER,
    replies INTEGER,
    quotes INTEGER,
    reposts INTEGER,
    created_at TIMESTAMPTZ DEFAULT now(),
    UNIQUE (did, date)
);

CREATE TABLE IF NOT EXISTS views (
    id SERIAL PRIMARY KEY,
    did VARCHAR(255) REFERENCES users(did) ON DELETE CASCADE,
    date DATE NOT NULL,
    view_count INTEGER DEFAULT 1,
    created_at TIMESTAMPTZ DEFAULT now(),
    UNIQUE (did, date)
);

CREATE TABLE IF NOT EXISTS snapshot_logs (
    id INTEGER PRIMARY KEY,
    status VARCHAR(50) DEFAULT 'in_progress',
    time_started TIMESTAMPTZ NOT NULL,
    time_completed TIMESTAMPTZ,
    duration REAL,
    total_users INTEGER,
    created_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX IF NOT EXISTS idx_users_handle ON users(handle);
CREATE INDEX IF NOT EXISTS idx_users_last_active ON users(last_active);
CREATE INDEX IF NOT EXISTS idx_posts_did ON posts(did);
CREATE INDEX IF NOT EXISTS idx_posts_created_at ON posts("createdAt");
CREATE INDEX IF NOT EXISTS idx_snapshots_did_date ON snapshots(did, date);
CREATE INDEX IF NOT EXISTS idx_snapshots_date ON snapshots(date);
CREATE INDEX IF NOT EXISTS idx_views_did_date ON views(did, date);
CREATE INDEX IF NOT EXISTS idx_views_date ON views(date);
