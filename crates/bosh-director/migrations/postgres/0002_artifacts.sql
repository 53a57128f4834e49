-- Stemcells, releases, packages, jobs, compiled packages, the blob content index and events.
-- Booleans are BIGINT 0/1 so both backends decode them the same way through sqlx::Any.
CREATE TABLE stemcells (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    operating_system TEXT NOT NULL,
    cid TEXT NOT NULL,
    sha1 TEXT NOT NULL,
    api_version BIGINT,
    cpi TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    UNIQUE (name, version)
);

CREATE TABLE releases (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE release_versions (
    id BIGSERIAL PRIMARY KEY,
    release_id BIGINT NOT NULL REFERENCES releases (id),
    version TEXT NOT NULL,
    commit_hash TEXT NOT NULL DEFAULT '',
    uncommitted_changes BIGINT NOT NULL DEFAULT 0,
    update_completed BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (release_id, version)
);

-- Content index: one blob per archive digest, shared by every row that holds that content.
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    blobstore_id TEXT NOT NULL,
    size BIGINT NOT NULL
);

CREATE TABLE packages (
    id BIGSERIAL PRIMARY KEY,
    release_id BIGINT NOT NULL REFERENCES releases (id),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    sha1 TEXT,
    blobstore_id TEXT,
    dependencies TEXT NOT NULL DEFAULT '[]',
    UNIQUE (release_id, name, version)
);
CREATE INDEX packages_fingerprint ON packages (fingerprint);

CREATE TABLE templates (
    id BIGSERIAL PRIMARY KEY,
    release_id BIGINT NOT NULL REFERENCES releases (id),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    sha1 TEXT NOT NULL,
    blobstore_id TEXT NOT NULL,
    spec TEXT NOT NULL DEFAULT '{}',
    UNIQUE (release_id, name, version)
);

CREATE TABLE release_versions_packages (
    release_version_id BIGINT NOT NULL REFERENCES release_versions (id),
    package_id BIGINT NOT NULL REFERENCES packages (id),
    PRIMARY KEY (release_version_id, package_id)
);

CREATE TABLE release_versions_templates (
    release_version_id BIGINT NOT NULL REFERENCES release_versions (id),
    template_id BIGINT NOT NULL REFERENCES templates (id),
    PRIMARY KEY (release_version_id, template_id)
);

CREATE TABLE compiled_packages (
    id BIGSERIAL PRIMARY KEY,
    package_id BIGINT NOT NULL REFERENCES packages (id),
    stemcell_os TEXT NOT NULL,
    stemcell_version TEXT NOT NULL,
    dependency_key TEXT NOT NULL,
    sha1 TEXT NOT NULL,
    blobstore_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (package_id, stemcell_os, stemcell_version, dependency_key)
);

CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    parent_id BIGINT,
    timestamp BIGINT NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_name TEXT,
    task TEXT,
    deployment TEXT,
    instance TEXT,
    context TEXT NOT NULL DEFAULT '{}',
    error TEXT
);
CREATE INDEX events_timestamp ON events (timestamp);
