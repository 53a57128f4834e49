-- Core director state. Times are Unix seconds (BIGINT) so both backends share one encoding.
CREATE TABLE director_attributes (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL
);

CREATE TABLE tasks (
    id BIGSERIAL PRIMARY KEY,
    type TEXT NOT NULL,
    state TEXT NOT NULL,
    description TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    username TEXT NOT NULL,
    deployment TEXT,
    context_id TEXT NOT NULL DEFAULT '',
    result TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    checkpoint_at BIGINT,
    owner TEXT
);
CREATE INDEX tasks_state_id ON tasks (state, id);

CREATE TABLE locks (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    resource TEXT NOT NULL,
    task_id BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

CREATE TABLE configs (
    id BIGSERIAL PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    content TEXT NOT NULL,
    team TEXT,
    created_at BIGINT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX configs_type_name_id ON configs (type, name, id);

CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    manifest TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
