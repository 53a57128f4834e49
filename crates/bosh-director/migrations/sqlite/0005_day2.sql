-- Day-2 state: how an instance's VM is made (so a lost VM can be recreated as it was, without
-- a new plan), cloud-check problems, and errand runs (for `run-errand --when-changed`).

-- The VmSpec given to create_vm for the instance's current VM (stemcell, cloud properties,
-- networks, user env, group names, metadata) as JSON; never holds certificates or credentials.
ALTER TABLE instances ADD COLUMN vm_spec TEXT;

-- Problems found by a cloud-check scan. `resource_id` names what is broken (an instance uuid
-- or a disk cid); `data` is the JSON the API shows; state: open | resolved | closed.
CREATE TABLE problems (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment TEXT NOT NULL,
    type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    instance_id BIGINT,
    data TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'open',
    counter BIGINT NOT NULL DEFAULT 1,
    resolution TEXT,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX problems_deployment_state ON problems (deployment, state);

-- One row per errand run on an instance; `configuration_hash` is what the instance ran with.
CREATE TABLE errand_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment TEXT NOT NULL,
    errand TEXT NOT NULL,
    instance_group TEXT NOT NULL,
    instance_uuid TEXT NOT NULL,
    configuration_hash TEXT NOT NULL DEFAULT '',
    exit_code BIGINT,
    task_id BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX errand_runs_deployment ON errand_runs (deployment, errand, id);
