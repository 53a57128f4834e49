//! Template failures name the job, the template and the ERB line, in the director's words,
//! and a batch reports every failure at once.

mod common;

use bosh_templates::{RenderError, Renderer, ruby_locate_in};
use common::*;
use pretty_assertions::assert_eq;
use serde_json::json;

fn single_error(text: &str) -> bosh_templates::TemplateFailure {
    let req = request(
        instance("web", 0, "u0"),
        vec![job(
            "api",
            &[("config.yml.erb", "config/config.yml", text)],
            json!({"set": 1}),
        )],
    );
    let mut errors = template_errors(&req);
    assert_eq!(errors.failures.len(), 1, "{errors}");
    errors.failures.remove(0)
}

#[test]
fn undefined_property_without_default() {
    let f = single_error("a: 1\nb: 2\nport: <%= p('port') %>\n");
    assert_eq!(f.job, "api");
    assert_eq!(f.template, "config.yml.erb");
    assert_eq!(f.line, Some(3));
    assert_eq!(
        f.message,
        r#"Error filling in template 'config.yml.erb' (line 3: Can't find property '["port"]')"#
    );
}

#[test]
fn undefined_property_among_several_names() {
    let f = single_error("<%= p(['a.b', 'c']) %>");
    assert_eq!(
        f.message,
        r#"Error filling in template 'config.yml.erb' (line 1: Can't find property '["a.b", "c"]')"#
    );
}

#[test]
fn ruby_syntax_error_names_the_line() {
    let f = single_error("ok\n<% if %>\n");
    assert_eq!(f.line, Some(2));
    assert!(
        f.message.starts_with(
            "Error filling in template 'config.yml.erb' (line 2: api/config.yml.erb:2: syntax error"
        ),
        "{}",
        f.message
    );
}

#[test]
fn exception_raised_in_a_template() {
    let f = single_error("one\ntwo\n\n<% raise 'no backend configured' %>");
    assert_eq!(f.line, Some(4));
    assert_eq!(
        f.message,
        "Error filling in template 'config.yml.erb' (line 4: no backend configured)"
    );
}

#[test]
fn missing_link() {
    let f = single_error("\n<%= link('db').instances.size %>");
    assert_eq!(f.line, Some(2));
    assert_eq!(
        f.message,
        "Error filling in template 'config.yml.erb' (line 2: Can't find link 'db')"
    );
}

#[test]
fn undefined_method_does_not_dump_the_context() {
    let f = single_error("<%= no_such_helper %>");
    assert!(
        f.message
            .contains("undefined local variable or method `no_such_helper'"),
        "{}",
        f.message
    );
    assert!(
        !f.message.contains("set"),
        "properties leaked: {}",
        f.message
    );
}

#[test]
fn batch_with_three_broken_templates_reports_three_errors() {
    let web = job(
        "api",
        &[
            ("good.erb", "good", "fine"),
            ("a.erb", "a", "x\n<%= p('nope') %>"),
            ("b.erb", "b", "<% if %>"),
        ],
        json!({}),
    );
    let mut worker = job(
        "worker",
        &[("c.erb", "c", "\n\n<%= link('q').p('x') %>")],
        json!({}),
    );
    worker.monit = "check process w\n".into();
    let mut req = request(instance("web", 0, "u0"), vec![web]);
    req.instances.push(bosh_templates::InstanceRender {
        instance: instance("jobs", 1, "u1"),
        jobs: vec![worker],
    });
    let errors = template_errors(&req);
    let got: Vec<(&str, &str, &str, Option<u32>)> = errors
        .failures
        .iter()
        .map(|f| {
            (
                f.instance_id.as_str(),
                f.job.as_str(),
                f.template.as_str(),
                f.line,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("u0", "api", "a.erb", Some(2)),
            ("u0", "api", "b.erb", Some(1)),
            ("u1", "worker", "c.erb", Some(3)),
        ]
    );
    let shown = errors.to_string();
    let expected_head = "- Unable to render jobs for instance group 'web'. Errors are:\n  \
         - Unable to render templates for job 'api'. Errors are:\n    \
         - Error filling in template 'a.erb' (line 2: Can't find property '[\"nope\"]')\n    \
         - Error filling in template 'b.erb' (line 1: api/b.erb:1: syntax error";
    assert!(shown.starts_with(expected_head), "{shown}");
    assert!(
        shown.ends_with(
            "- Unable to render jobs for instance group 'jobs'. Errors are:\n  \
             - Unable to render templates for job 'worker'. Errors are:\n    \
             - Error filling in template 'c.erb' (line 3: Can't find link 'q')"
        ),
        "{shown}"
    );
}

#[test]
fn broken_monit_is_reported_as_monit() {
    let mut j = job("api", &[], json!({}));
    j.monit = "check process <%= p('name') %>\n".into();
    let errors = template_errors(&request(instance("web", 0, "u0"), vec![j]));
    assert_eq!(errors.failures[0].template, "monit");
    assert_eq!(
        errors.failures[0].message,
        r#"Error filling in template 'monit' (line 1: Can't find property '["name"]')"#
    );
}

#[test]
fn destination_escaping_the_job_dir_is_rejected() {
    let req = request(
        instance("web", 0, "u0"),
        vec![job("api", &[("x.erb", "../../etc/passwd", "x")], json!({}))],
    );
    match bosh_templates::render_batch(&req) {
        Err(RenderError::Request { field, message }) => {
            assert_eq!(field, "instances[0].jobs[0].templates[0].destination");
            assert!(message.contains("x.erb"), "{message}");
        }
        other => panic!("expected a request error, got {other:?}"),
    }
}

#[test]
fn missing_ruby_is_a_clear_error() {
    let err = ruby_locate_in(Some("/nonexistent/ruby".into()), None).unwrap_err();
    assert!(
        err.to_string().contains("'/nonexistent/ruby' not found"),
        "{err}"
    );
    assert!(err.to_string().contains("BOSH_RS_RUBY"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err = ruby_locate_in(None, Some(empty.path().into())).unwrap_err();
    assert!(err.to_string().contains("'ruby' not found"), "{err}");

    let err = Renderer::new("/nonexistent/ruby".into())
        .render_batch(&request(instance("web", 0, "u"), vec![]))
        .unwrap_err();
    assert!(matches!(err, RenderError::RubyMissing { .. }), "{err:?}");
}

#[test]
fn ruby_is_found_on_path() {
    let found = ruby_locate_in(None, std::env::var_os("PATH")).unwrap();
    assert!(found.ends_with("ruby"), "{}", found.display());
}

#[test]
fn a_template_that_never_ends_is_killed_at_the_deadline() {
    let req = request(
        instance("web", 0, "u0"),
        vec![job(
            "api",
            &[("loop.erb", "loop", "<% loop { } %>")],
            json!({}),
        )],
    );
    let started = std::time::Instant::now();
    let err = Renderer::locate()
        .unwrap()
        .with_timeout(std::time::Duration::from_secs(2))
        .render_batch(&req)
        .unwrap_err();
    assert!(matches!(err, RenderError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
