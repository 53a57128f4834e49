//! Configuration hash, template hashes and the rendered-templates archive (formats.md §7.2),
//! and the one-process-per-batch property.

mod common;

use bosh_templates::{
    InstanceRender, RenderRequest, RenderedFile, RenderedInstance, RenderedJob,
    rendered_templates_archive,
};
use common::*;
use pretty_assertions::assert_eq;
use serde_json::json;

fn file(source: &str, destination: &str, content: &str) -> RenderedFile {
    RenderedFile {
        source: source.into(),
        destination: destination.into(),
        content: content.into(),
    }
}

/// Two jobs given out of name order, files out of source order.
fn sample() -> RenderedInstance {
    RenderedInstance {
        name: "web".into(),
        id: "u".into(),
        index: 0,
        jobs: vec![
            RenderedJob {
                name: "job-z".into(),
                monit: "check zz".into(),
                files: vec![file(".bosh/links.json", ".bosh/links.json", "[]\n")],
            },
            RenderedJob {
                name: "job-a".into(),
                monit: "check aa".into(),
                files: vec![
                    file("b.erb", "b/two", "B2"),
                    file("a.erb", "a/one", "A1"),
                    file(".bosh/links.json", ".bosh/links.json", ""),
                ],
            },
        ],
    }
}

#[test]
fn configuration_hash_matches_the_director_algorithm() {
    // printf 'check aajob-a.bosh/links.jsonA1a/oneB2b/twocheck zzjob-z[]\n.bosh/links.json' | sha1sum
    assert_eq!(
        sample().configuration_hash(),
        "8b50ea5b0fc2477a2010cb9a8a2a82bede86793b"
    );
    // printf 'check aaA1B2' | sha1sum
    assert_eq!(
        sample().template_hashes()["job-a"],
        "1044e37b1baee9b47f033a1fc265446b29d17018"
    );
}

#[test]
fn configuration_hash_changes_with_any_rendered_byte_only() {
    let base = sample().configuration_hash();

    let mut reordered = sample();
    reordered.jobs.reverse();
    reordered.jobs[0].files.reverse();
    assert_eq!(
        reordered.configuration_hash(),
        base,
        "order of input must not matter"
    );

    let mut other_instance = sample();
    other_instance.id = "another".into();
    other_instance.index = 3;
    assert_eq!(
        other_instance.configuration_hash(),
        base,
        "only rendered output counts"
    );

    let mut content = sample();
    content.jobs[1].files[0].content = "B3".into();
    assert_ne!(content.configuration_hash(), base);

    let mut monit = sample();
    monit.jobs[0].monit.push('\n');
    assert_ne!(monit.configuration_hash(), base);

    let mut dest = sample();
    dest.jobs[1].files[1].destination = "a/One".into();
    assert_ne!(dest.configuration_hash(), base);
    assert_eq!(
        dest.template_hashes(),
        sample().template_hashes(),
        "template hashes ignore destinations"
    );
}

#[test]
fn configuration_hash_of_a_real_rendering_follows_a_property() {
    let hash = |port: u16| {
        let req = request(
            instance("web", 0, "u"),
            vec![job(
                "app",
                &[("c.erb", "config/c", "port=<%= p('port') %>")],
                json!({"port": port}),
            )],
        );
        render(&req).instances.remove(0).configuration_hash()
    };
    assert_eq!(hash(80), hash(80));
    assert_ne!(hash(80), hash(81));
}

#[test]
fn archive_has_the_layout_the_agent_unpacks() {
    let archive = rendered_templates_archive(&sample()).unwrap();
    let again = rendered_templates_archive(&sample()).unwrap();
    assert_eq!(archive, again, "same rendering, same bytes");
    assert_eq!(archive.sha1.len(), 40);
    {
        use sha1::Digest;
        assert_eq!(
            archive.sha1,
            hex::encode(sha1::Sha1::digest(&archive.bytes))
        );
    }

    let mut entries = Vec::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive.bytes.as_slice()));
    for e in tar.entries().unwrap() {
        let e = e.unwrap();
        entries.push((
            e.path().unwrap().display().to_string(),
            e.header().mode().unwrap(),
        ));
    }
    let want: Vec<(String, u32)> = [
        "job-z/monit",
        "job-z/.bosh/links.json",
        "job-a/monit",
        "job-a/b/two",
        "job-a/a/one",
        "job-a/.bosh/links.json",
    ]
    .iter()
    .map(|p| ((*p).to_owned(), 0o644))
    .collect();
    assert_eq!(entries, want);

    // Unpacked as the agent's applier does: one directory per job.
    let dir = tempfile::tempdir().unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(archive.bytes.as_slice()))
        .unpack(dir.path())
        .unwrap();
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    assert_eq!(read("job-a/monit"), "check aa");
    assert_eq!(read("job-a/a/one"), "A1");
    assert_eq!(read("job-z/.bosh/links.json"), "[]\n");
}

#[test]
fn two_hundred_templates_render_in_one_ruby_process() {
    let instances: Vec<InstanceRender> = (0..20)
        .map(|i| InstanceRender {
            instance: instance("web", i, &format!("uuid-{i}")),
            jobs: ["alpha", "beta"]
                .iter()
                .map(|name| {
                    let templates: Vec<(String, String)> = (0..5)
                        .map(|t| (format!("t{t}.erb"), format!("config/t{t}")))
                        .collect();
                    let refs: Vec<(&str, &str, &str)> = templates
                        .iter()
                        .map(|(s, d)| {
                            (
                                s.as_str(),
                                d.as_str(),
                                "<%= Process.pid %> <%= spec.index %>",
                            )
                        })
                        .collect();
                    job(name, &refs, json!({}))
                })
                .collect(),
        })
        .collect();
    let batch = render(&RenderRequest {
        instances,
        ..RenderRequest::default()
    });
    assert_ne!(batch.renderer_pid, std::process::id());
    let mut count = 0;
    for (i, inst) in batch.instances.iter().enumerate() {
        for job in &inst.jobs {
            for f in job.files.iter().filter(|f| f.source != ".bosh/links.json") {
                assert_eq!(f.content, format!("{} {i}", batch.renderer_pid));
                count += 1;
            }
        }
    }
    assert_eq!(count, 200);
    assert!(
        !std::path::Path::new(&format!("/proc/{}", batch.renderer_pid)).exists(),
        "the renderer has exited and been reaped"
    );
}
