//! Shared builders for the renderer tests.
#![allow(dead_code)]

use bosh_templates::{
    InstanceContext, InstanceRender, JobRender, LinkInstance, LinkSpec, ReleaseRef, RenderError,
    RenderRequest, RenderedBatch, TemplateErrors, TemplateSource, render_batch,
};
use indexmap::IndexMap;
use serde_json::{Value, json};

pub fn instance(group: &str, index: u32, id: &str) -> InstanceContext {
    let mut networks = IndexMap::new();
    networks.insert(
        "default".to_owned(),
        json!({
            "type": "manual",
            "ip": format!("10.0.0.{}", 10 + index),
            "netmask": "255.255.255.0",
            "gateway": "10.0.0.1",
            "dns": ["10.0.0.2"],
            "default": ["dns", "gateway"],
            "cloud_properties": {},
            "dns_record_name": format!("{index}.{group}.default.demo.bosh"),
        }),
    );
    InstanceContext {
        deployment: "demo".into(),
        job: None,
        index,
        bootstrap: index == 0,
        name: group.into(),
        id: id.into(),
        az: Some("z1".into()),
        networks,
        properties_need_filtering: true,
        dns_domain_name: "bosh".into(),
        persistent_disk: 0,
        address: Some(format!("10.0.0.{}", 10 + index)),
        ip: Some(format!("10.0.0.{}", 10 + index)),
    }
}

pub fn release() -> ReleaseRef {
    ReleaseRef {
        name: "demo".into(),
        version: "1+dev.1".into(),
    }
}

/// A job with the given templates (source, destination, ERB text) and bound properties.
pub fn job(name: &str, templates: &[(&str, &str, &str)], properties: Value) -> JobRender {
    JobRender {
        name: name.into(),
        release: release(),
        monit: String::new(),
        templates: templates
            .iter()
            .map(|(s, d, t)| TemplateSource {
                source: (*s).into(),
                destination: (*d).into(),
                text: (*t).into(),
            })
            .collect(),
        properties: properties.as_object().cloned().unwrap_or_default(),
        links: IndexMap::new(),
        provided_links: Vec::new(),
    }
}

pub fn link(group: &str, count: u32, properties: Value) -> LinkSpec {
    LinkSpec {
        deployment_name: Some("demo".into()),
        domain: Some("bosh".into()),
        default_network: Some("default".into()),
        instance_group: Some(group.into()),
        instances: (0..count)
            .map(|i| LinkInstance {
                name: group.into(),
                id: format!("{group}-id-{i}"),
                index: i,
                bootstrap: i == 0,
                az: Some(format!("z{}", i % 2 + 1)),
                address: format!("10.0.1.{}", 10 + i),
            })
            .collect(),
        properties: properties.as_object().cloned().unwrap_or_default(),
        ..LinkSpec::default()
    }
}

pub fn request(instance: InstanceContext, jobs: Vec<JobRender>) -> RenderRequest {
    RenderRequest {
        instances: vec![InstanceRender { instance, jobs }],
        ..RenderRequest::default()
    }
}

pub fn render(req: &RenderRequest) -> RenderedBatch {
    match render_batch(req) {
        Ok(b) => b,
        Err(e) => panic!("render failed: {e}"),
    }
}

/// Renders one template of one job on `web/0` and returns its content.
pub fn render_text(text: &str, properties: Value) -> String {
    render_text_with(text, properties, IndexMap::new())
}

pub fn render_text_with(
    text: &str,
    properties: Value,
    links: IndexMap<String, LinkSpec>,
) -> String {
    let mut j = job("app", &[("t.erb", "t", text)], properties);
    j.links = links;
    let batch = render(&request(instance("web", 0, "uuid-0"), vec![j]));
    batch.instances[0].jobs[0].files[0].content.clone()
}

pub fn template_errors(req: &RenderRequest) -> TemplateErrors {
    match render_batch(req) {
        Err(RenderError::Templates(e)) => e,
        Err(other) => panic!("expected template errors, got: {other}"),
        Ok(_) => panic!("expected template errors, got a rendering"),
    }
}
