# Database seeding for the director benchmarks (sourced, not run): rows inserted with sqlite3
# straight into a director's SQLite database (DATA_DIR/director.db, schema created by starting
# and stopping a director on DATA_DIR first).

# seed_deployments_sql N : SQL inserting deployments deployment-00001 .. N, each with a ~1.5 KB
# manifest (3 releases, 1 stemcell, 3 instance groups), created a minute apart up to now. To be
# used inside the caller's transaction.
seed_deployments_sql() {
  local n=$1 now
  now=$(date +%s)
  cat <<SQL
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${n})
INSERT INTO deployments (id, name, manifest, created_at)
SELECT printf('%08x-0000-4000-8000-%012x', i, i), printf('deployment-%05d', i),
  printf('name: deployment-%05d
releases:
- name: app
  version: "%d.%d.0"
- name: bpm
  version: 1.2.3
- name: routing
  version: "0.%d.0"
stemcells:
- alias: default
  os: ubuntu-jammy
  version: "1.%d"
update:
  canaries: 1
  max_in_flight: 2
  canary_watch_time: 1000-30000
  update_watch_time: 1000-30000
instance_groups:
- name: web
  instances: 3
  azs: [z1, z2]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs:
  - {name: web, release: app, properties: {port: 8080, workers: 4}}
  - {name: bpm, release: bpm}
- name: worker
  instances: 2
  azs: [z1]
  vm_type: medium
  stemcell: default
  networks: [{name: default}]
  jobs:
  - {name: worker, release: app, properties: {queue: jobs-%d}}
- name: router
  instances: 2
  azs: [z1, z2]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs:
  - {name: gorouter, release: routing, properties: {router: {port: 80, status: {port: 8082}}}}
', i, i % 7, i % 5, i % 40, i % 90, i),
  ${now} - (${n} - i) * 60
FROM n;
SQL
}

# seed_schema DATA_DIR : starts a director on DATA_DIR (it runs the migrations) and stops it.
seed_schema() {
  echo "creating the schema" >&2
  director_start "$1"
  director_stop
}
