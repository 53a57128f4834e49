//! Every evaluation-context helper a template can call (formats.md §7.1).

mod common;

use common::*;
use indexmap::IndexMap;
use pretty_assertions::assert_eq;
use serde_json::json;

#[test]
fn p_reads_nested_hashes_by_dotted_name() {
    let out = render_text(
        "<%= p('a.b.c') %>|<%= p('a.b').keys.join(',') %>",
        json!({"a": {"b": {"c": 42, "d": 1}}}),
    );
    assert_eq!(out, "42|c,d");
}

#[test]
fn p_default_applies_only_when_unset() {
    let out = render_text(
        "<%= p('missing', 'dflt') %>|<%= p('set', 'dflt') %>|<%= p('off', true) %>|<%= p('missing', nil).inspect %>",
        json!({"set": "given", "off": false}),
    );
    // false counts as set; an explicit nil default is returned as nil
    assert_eq!(out, "dflt|given|false|nil");
}

#[test]
fn p_with_names_takes_the_first_set_one() {
    let out = render_text(
        "<%= p(['x.new', 'x.old']) %>|<%= p(['nope', 'neither'], 7) %>",
        json!({"x": {"new": null, "old": "legacy"}}),
    );
    assert_eq!(out, "legacy|7");
}

#[test]
fn if_p_with_several_names_and_else() {
    let text = "<% if_p('a', 'b') do |a, b| %>both:<%= a %>,<%= b %><% end.else do %>not both<% end %>\
                |<% if_p('a', 'c') do |a, c| %>yes<% end.else do %>else ran<% end %>\
                |<% if_p('c') { |c| %>c<% }.else_if_p('b') do |b| %>b=<%= b %><% end %>";
    let out = render_text(text, json!({"a": 1, "b": "two"}));
    assert_eq!(out, "both:1,two|else ran|b=two");
}

#[test]
fn spec_exposes_the_instance() {
    let text = "<%= spec.name %> <%= spec.id %> <%= spec.index %> <%= spec.bootstrap %> <%= spec.az %> \
                <%= spec.address %> <%= spec.ip %> <%= spec.deployment %> <%= spec.networks.default.ip %> \
                <%= spec.networks.methods(false).join(',') %> <%= spec.release.name %>/<%= spec.release.version %> \
                <%= name %> <%= index %> <%= spec.dns_domain_name %> <%= spec.networks.default.dns_record_name %>";
    let out = render_text(text, json!({}));
    assert_eq!(
        out,
        "web uuid-0 0 true z1 10.0.0.10 10.0.0.10 demo 10.0.0.10 default demo/1+dev.1 web 0 bosh \
         0.web.default.demo.bosh"
    );
}

#[test]
fn properties_struct_and_raw_properties() {
    let out = render_text(
        "<%= properties.db.port %>|<%= raw_properties['db']['host'] %>|<%= spec.properties.db.port %>",
        json!({"db": {"port": 5432, "host": "h"}}),
    );
    assert_eq!(out, "5432|h|5432");
}

#[test]
fn link_instances_properties_and_p() {
    let mut links = IndexMap::new();
    links.insert(
        "db".to_owned(),
        link("pg", 3, json!({"port": 5432, "tls": {"on": true}})),
    );
    let text = "<%= link('db').instances.map { |i| \"#{i.name}/#{i.index}@#{i.address}:#{i.az}:#{i.bootstrap}\" }.join(' ') %>\
                |<%= link('db').p('port') %>|<%= link('db').p('tls.on') %>|<%= link('db').p('nope', 'd') %>\
                |<%= link('db').properties['port'] %>|<%= link('db').instances.first.id %>\
                |<% link('db').if_p('tls.on') do |on| %>tls=<%= on %><% end %>\
                |<%= link('db').address %>|<%= link('db').address(azs: ['z2'], status: 'healthy') %>";
    let mut req = request(instance("web", 0, "u"), {
        let mut j = job("app", &[("t.erb", "t", text)], json!({}));
        j.links = links;
        vec![j]
    });
    req.dns.az_ids.insert("z2".into(), 2);
    let out = render(&req).instances[0].jobs[0].files[0].content.clone();
    assert_eq!(
        out,
        "pg/0@10.0.1.10:z1:true pg/1@10.0.1.11:z2:false pg/2@10.0.1.12:z1:false\
         |5432|true|d|5432|pg-id-0|tls=true\
         |q-s0.pg.default.demo.bosh|q-a2s3.pg.default.demo.bosh"
    );
}

#[test]
fn manual_link_address_is_literal() {
    let mut l = link("ext", 1, json!({}));
    l.address = Some("db.example.com".into());
    let mut links = IndexMap::new();
    links.insert("db".to_owned(), l);
    let out = render_text_with("<%= link('db').address %>", json!({}), links);
    assert_eq!(out, "db.example.com");
}

#[test]
fn if_link_and_else() {
    let mut links = IndexMap::new();
    links.insert("here".to_owned(), link("pg", 2, json!({})));
    let text = "<% if_link('here') do |l| %>n=<%= l.instances.size %><% end.else do %>none<% end %>\
                |<% if_link('gone') do |l| %>n=<%= l.instances.size %><% end.else do %>none<% end %>\
                |<% if_link('gone') { |l| %>x<% }.else_if_link('here') do |l| %>fallback <%= l.instances.size %><% end %>\
                |<% if_link('gone') { |l| %>x<% }.else_if_p('k') do |k| %>k=<%= k %><% end %>";
    let out = render_text_with(text, json!({"k": "v"}), links);
    assert_eq!(out, "n=2|none|fallback 2|k=v");
}

#[test]
fn trim_mode_dash_eats_the_newline() {
    let out = render_text("a\n<% if true -%>\nb\n<% end -%>\nc\n", json!({}));
    assert_eq!(out, "a\nb\nc\n");
}

#[test]
fn stdlib_helpers_are_loaded() {
    let out = render_text(
        "<%= JSON.generate({'a' => [1]}) %>|<%= {'k' => 1}.to_yaml.lines.last.strip %>|<%= Shellwords.escape('a b') %>\
         |<%= ''.blank? %>|<%= 'x'.present? %>|<%= nil.blank? %>",
        json!({}),
    );
    assert_eq!(out, "{\"a\":[1]}|k: 1|a\\ b|true|true|true");
}

#[test]
fn templates_do_not_see_each_others_mutations() {
    let j = job(
        "app",
        &[
            (
                "a.erb",
                "a",
                "<% raw_properties['x'] = 'changed' %><%= p('x') %>",
            ),
            ("b.erb", "b", "<%= p('x') %>"),
        ],
        json!({"x": "orig"}),
    );
    let batch = render(&request(instance("web", 0, "u"), vec![j]));
    let files = &batch.instances[0].jobs[0].files;
    assert_eq!(files[0].content, "changed");
    assert_eq!(files[1].content, "orig");
}

#[test]
fn template_output_on_stdout_does_not_break_the_answer() {
    let out = render_text("<% puts 'noise'; $stdout.write('more') %>ok", json!({}));
    assert_eq!(out, "ok");
}

#[test]
fn templates_do_not_see_the_callers_environment() {
    // CARGO_PKG_NAME is set for every test binary by cargo; PATH is kept for Ruby.
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    let out = render_text(
        "<%= ENV.key?('CARGO_PKG_NAME') %>|<%= ENV.key?('PATH') %>",
        json!({}),
    );
    assert_eq!(out, "false|true");
}
