-- Deploy state: instances, VMs, persistent and orphaned disks, IP reservations, variable sets,
-- rendered template archives, and the compiled-package cache key. Deployments are referenced by
-- name (as tasks and events do); booleans are BIGINT 0/1; times are Unix seconds.
CREATE TABLE variable_sets (
    id BIGSERIAL PRIMARY KEY,
    deployment TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    deployed_successfully BIGINT NOT NULL DEFAULT 0,
    writable BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX variable_sets_deployment ON variable_sets (deployment, id);

-- One row per ((name)) a variable set uses; `variable_id` is the config server's id of the
-- value (values themselves live in the config server, encrypted at rest).
CREATE TABLE variables (
    id BIGSERIAL PRIMARY KEY,
    variable_set_id BIGINT NOT NULL REFERENCES variable_sets (id) ON DELETE CASCADE,
    variable_id TEXT NOT NULL,
    variable_name TEXT NOT NULL,
    is_local BIGINT NOT NULL DEFAULT 1,
    provider_deployment TEXT NOT NULL DEFAULT '',
    UNIQUE (variable_set_id, variable_name, provider_deployment)
);

CREATE TABLE instances (
    id BIGSERIAL PRIMARY KEY,
    deployment TEXT NOT NULL,
    instance_group TEXT NOT NULL,
    uuid TEXT NOT NULL UNIQUE,
    instance_index BIGINT NOT NULL,
    az TEXT,
    bootstrap BIGINT NOT NULL DEFAULT 0,
    -- started | stopped | detached
    state TEXT NOT NULL DEFAULT 'started',
    ignored BIGINT NOT NULL DEFAULT 0,
    -- The apply spec last sent to the agent (JSON).
    spec_json TEXT,
    variable_set_id BIGINT REFERENCES variable_sets (id),
    update_completed BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (deployment, instance_group, instance_index)
);

-- A VM row is written before create_vm is sent (cid NULL) so a crash leaves a findable row.
-- `env` holds the instance group's env only: mbus certificates and blobstore credentials are
-- never stored. Compilation VMs have no instance.
CREATE TABLE vms (
    id BIGSERIAL PRIMARY KEY,
    agent_id TEXT NOT NULL UNIQUE,
    cid TEXT,
    deployment TEXT NOT NULL,
    instance_id BIGINT REFERENCES instances (id),
    stemcell_name TEXT NOT NULL DEFAULT '',
    stemcell_version TEXT NOT NULL DEFAULT '',
    stemcell_cid TEXT NOT NULL,
    cpi TEXT NOT NULL DEFAULT '',
    env TEXT NOT NULL DEFAULT '{}',
    network_spec TEXT NOT NULL DEFAULT '{}',
    compilation BIGINT NOT NULL DEFAULT 0,
    active BIGINT NOT NULL DEFAULT 0,
    task_id BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX vms_deployment ON vms (deployment);
CREATE INDEX vms_instance ON vms (instance_id);

CREATE TABLE persistent_disks (
    id BIGSERIAL PRIMARY KEY,
    instance_id BIGINT NOT NULL REFERENCES instances (id),
    cid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    size BIGINT NOT NULL,
    cloud_properties TEXT NOT NULL DEFAULT '{}',
    active BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE orphan_disks (
    id BIGSERIAL PRIMARY KEY,
    cid TEXT NOT NULL UNIQUE,
    size BIGINT NOT NULL,
    availability_zone TEXT,
    deployment TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    cloud_properties TEXT NOT NULL DEFAULT '{}',
    cpi TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

-- IP reservations. The UNIQUE constraint is what keeps two concurrent deploys (or two
-- compilation VMs) from taking the same address: an insert that loses the race fails.
-- `address` is the canonical text form (Rust's `IpAddr` display).
CREATE TABLE ip_addresses (
    id BIGSERIAL PRIMARY KEY,
    network_name TEXT NOT NULL,
    address TEXT NOT NULL,
    deployment TEXT NOT NULL,
    instance_id BIGINT REFERENCES instances (id),
    vm_id BIGINT REFERENCES vms (id),
    static BIGINT NOT NULL DEFAULT 0,
    task_id BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (network_name, address)
);

CREATE TABLE rendered_templates_archives (
    id BIGSERIAL PRIMARY KEY,
    instance_id BIGINT NOT NULL REFERENCES instances (id),
    blobstore_id TEXT NOT NULL,
    sha1 TEXT NOT NULL,
    content_sha1 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX rendered_templates_archives_instance ON rendered_templates_archives (instance_id, id);

-- The compiled-package cache is keyed by content, not by release: (package fingerprint,
-- stemcell os, stemcell version, dependency key). Rows from before this migration have an
-- empty fingerprint and stay outside the key.
ALTER TABLE compiled_packages ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
ALTER TABLE compiled_packages ADD COLUMN build BIGINT NOT NULL DEFAULT 1;
CREATE UNIQUE INDEX compiled_packages_cache_key
    ON compiled_packages (fingerprint, stemcell_os, stemcell_version, dependency_key)
    WHERE fingerprint <> '';
