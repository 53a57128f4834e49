//! The sim CPI, in process and as the `bosh-sim-cpi` executable behind the external client.

mod common;

use bosh_cpi::sim::SimCpi;
use bosh_cpi::{Cpi, ExternalCpi, ExternalCpiConfig, MemoryLogSink};
use bosh_cpi_protocol::CpiErrorKind;
use bosh_cpi_protocol::methods::CreateVmArgs;
use bosh_types::ids::AgentId;
use common::*;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn sim_cpi_in_process_every_method() {
    let env = sim_env();
    let sim = SimCpi::new(env.config.clone()).unwrap();
    exercise_every_method(&sim, &env).await;
}

#[tokio::test]
async fn sim_cpi_through_external_client_every_method() {
    let env = sim_env();
    let mut config = ExternalCpiConfig::new(sim_wrapper(&env), "director-uuid");
    config.timeout = Duration::from_secs(60);
    let sink = Arc::new(MemoryLogSink::default());
    let cpi = ExternalCpi::new(config).with_log_sink(sink.clone());
    exercise_every_method(&cpi, &env).await;
    assert_eq!(cpi.api_version().await.unwrap(), 2);
    assert!(
        sink.contents().contains("vm created"),
        "sim stderr reaches the sink"
    );
}

#[tokio::test]
async fn create_vm_with_unknown_stemcell_fails_and_leaves_nothing() {
    let env = sim_env();
    let sim = SimCpi::new(env.config.clone()).unwrap();
    let e = sim
        .create_vm(CreateVmArgs {
            agent_id: AgentId::new_v4(),
            stemcell_cid: "sc-missing".parse().unwrap(),
            cloud_properties: Default::default(),
            networks: Default::default(),
            disk_cids: Default::default(),
            env: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(CpiErrorKind::VmCreationFailed));
    let vms = std::fs::read_dir(env.config.root_dir.join("vms"))
        .unwrap()
        .count();
    assert_eq!(vms, 0);
}

#[tokio::test]
async fn create_vm_with_broken_agent_command_fails_and_cleans_up() {
    let mut env = sim_env();
    env.config.agent.command = vec![env.dir.path().join("no-such-agent").display().to_string()];
    let sim = SimCpi::new(env.config.clone()).unwrap();
    let stemcell = sim
        .create_stemcell(bosh_cpi_protocol::methods::CreateStemcellArgs {
            image_path: env.stemcell_image.display().to_string(),
            cloud_properties: Default::default(),
            options: None,
        })
        .await
        .unwrap();
    let e = sim
        .create_vm(CreateVmArgs {
            agent_id: AgentId::new_v4(),
            stemcell_cid: stemcell,
            cloud_properties: Default::default(),
            networks: Default::default(),
            disk_cids: Default::default(),
            env: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(CpiErrorKind::VmCreationFailed));
    assert!(e.cpi_message().unwrap().contains("no-such-agent"));
    assert_eq!(
        std::fs::read_dir(env.config.root_dir.join("vms"))
            .unwrap()
            .count(),
        0
    );
}
