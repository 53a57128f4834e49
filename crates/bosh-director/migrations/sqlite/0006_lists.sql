-- Indexes for the listings and per-instance/per-VM cleanups (without them every
-- `GET /deployments/NAME/instances` and every VM delete scanned all IP reservations, and every
-- disk lookup all persistent disks), and a manifest version for `GET /deployments`.
CREATE INDEX ip_addresses_deployment_instance ON ip_addresses (deployment, instance_id, address);
CREATE INDEX ip_addresses_instance ON ip_addresses (instance_id);
CREATE INDEX ip_addresses_vm ON ip_addresses (vm_id);
CREATE INDEX persistent_disks_instance ON persistent_disks (instance_id);

-- Bumped whenever a deployment's manifest changes, so `GET /deployments` can keep each
-- deployment's release and stemcell names between requests without reading 1,500 manifests
-- to see whether they changed.
ALTER TABLE deployments ADD COLUMN manifest_version BIGINT NOT NULL DEFAULT 0;
CREATE TRIGGER deployments_manifest_version AFTER UPDATE OF manifest ON deployments
FOR EACH ROW WHEN NEW.manifest IS NOT OLD.manifest
BEGIN
    UPDATE deployments SET manifest_version = OLD.manifest_version + 1 WHERE id = NEW.id;
END;
