//! Rendering a batch of instances × jobs × templates in one Ruby process.
//!
//! The Ruby side is `renderer.rb` (embedded); it gets one JSON request on stdin and answers
//! one JSON document on stdout. Every template of the batch is rendered even when others
//! fail, so a failed batch reports all of its errors at once (what a dry run shows).
//!
//! The call blocks (a child process and pipes); async callers run it in `spawn_blocking`.

use crate::context::{DnsEncoding, InstanceContext, LinkSpec, ProvidedLink, ReleaseRef};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const RENDERER_SCRIPT: &str = include_str!("renderer.rb");
/// The environment variable naming the Ruby interpreter to use instead of `ruby` on PATH.
pub const RUBY_ENV: &str = "BOSH_RS_RUBY";
/// Kept from the renderer's stderr for error messages.
const STDERR_KEPT: usize = 16 * 1024;
/// Environment variables passed on to Ruby (interpreter, gems, locale, temp dir).
const RUBY_ENV_KEPT: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "GEM_HOME",
    "GEM_PATH",
    "RUBYLIB",
    "RUBYOPT",
    "BUNDLE_GEMFILE",
];
/// Source path (and destination) of the synthetic file listing the provided links.
pub const LINKS_JSON: &str = ".bosh/links.json";

/// Everything one render batch needs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RenderRequest {
    pub instances: Vec<InstanceRender>,
    /// Ids for `link(..).address(...)` DNS queries.
    #[serde(default)]
    pub dns: DnsEncoding,
}

/// One instance and the jobs placed on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRender {
    pub instance: InstanceContext,
    pub jobs: Vec<JobRender>,
}

/// One job on an instance: its sources and what its templates see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRender {
    pub name: String,
    pub release: ReleaseRef,
    /// The job's `monit` file (itself ERB; may be empty).
    pub monit: String,
    /// In the job spec's `templates` order.
    pub templates: Vec<TemplateSource>,
    /// Bound properties (spec defaults already applied, see [`crate::properties_bind`]).
    pub properties: serde_json::Map<String, serde_json::Value>,
    /// Consumed link name → resolved link.
    pub links: IndexMap<String, LinkSpec>,
    /// Links this job provides on this instance group (`.bosh/links.json`).
    pub provided_links: Vec<ProvidedLink>,
}

/// One template: its path under `templates/`, its destination under
/// `/var/vcap/jobs/<job>/`, and its ERB text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSource {
    pub source: String,
    pub destination: String,
    pub text: String,
}

/// The outcome of a successful batch.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedBatch {
    /// In request order.
    pub instances: Vec<RenderedInstance>,
    /// The pid of the one Ruby process that rendered the whole batch.
    pub renderer_pid: u32,
}

/// The rendered jobs of one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedInstance {
    /// Instance group name.
    pub name: String,
    /// Instance UUID.
    pub id: String,
    pub index: u32,
    /// In request order.
    pub jobs: Vec<RenderedJob>,
}

/// One rendered job: its monit file and its files, `.bosh/links.json` last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedJob {
    pub name: String,
    pub monit: String,
    pub files: Vec<RenderedFile>,
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Path under the job's `templates/` (the order key of every hash).
    pub source: String,
    /// Path under `/var/vcap/jobs/<job>/`.
    pub destination: String,
    pub content: String,
}

impl RenderedJob {
    /// The file rendered to `destination`, if any.
    pub fn file(&self, destination: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.destination == destination)
            .map(|f| f.content.as_str())
    }
}

impl RenderedInstance {
    /// The rendered job named `name`, if any.
    pub fn job(&self, name: &str) -> Option<&RenderedJob> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

/// Why a batch did not render.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "Ruby interpreter '{program}' not found: install Ruby (scripts/install-deps.sh) or set {RUBY_ENV}"
    )]
    RubyMissing { program: String },
    /// A field of the request is unusable; `field` is a path such as
    /// `instances[0].jobs[1].templates[2].destination`.
    #[error("render request: {field}: {message}")]
    Request { field: String, message: String },
    #[error("starting the template renderer {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} the template renderer")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the template renderer did not finish within {0:?} and was killed")]
    Timeout(Duration),
    #[error("the template renderer exited with {status}: {stderr}")]
    RendererFailed { status: String, stderr: String },
    #[error("the template renderer's answer does not match the request: {0}")]
    Answer(String),
    /// One or more templates failed; every failure of the batch is listed.
    #[error(transparent)]
    Templates(#[from] TemplateErrors),
}

/// Every template failure of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateErrors {
    pub failures: Vec<TemplateFailure>,
}

/// One template that failed to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFailure {
    pub instance_group: String,
    pub instance_id: String,
    pub index: u32,
    pub job: String,
    /// Source path under `templates/`, or `monit`.
    pub template: String,
    /// The ERB line, when Ruby reported one.
    pub line: Option<u32>,
    /// The director's message: `Error filling in template '<src>' (line N: <error>)`.
    pub message: String,
}

impl fmt::Display for TemplateErrors {
    /// The director's nesting: per instance, then per job, each level indented by two spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut blocks: Vec<String> = Vec::new();
        let mut start = 0;
        while start < self.failures.len() {
            let first = &self.failures[start];
            let end = start
                + self.failures[start..]
                    .iter()
                    .take_while(|x| x.instance_id == first.instance_id)
                    .count();
            let mut jobs: Vec<String> = Vec::new();
            let mut j = start;
            while j < end {
                let job = &self.failures[j].job;
                let job_end = j + self.failures[j..end]
                    .iter()
                    .take_while(|x| &x.job == job)
                    .count();
                let body = self.failures[j..job_end]
                    .iter()
                    .map(|x| format!("- {}", x.message.trim()))
                    .collect::<Vec<_>>()
                    .join("\n");
                jobs.push(format!(
                    "- Unable to render templates for job '{job}'. Errors are:\n{}",
                    indent(&body)
                ));
                j = job_end;
            }
            blocks.push(format!(
                "- Unable to render jobs for instance group '{}'. Errors are:\n{}",
                first.instance_group,
                indent(&jobs.join("\n"))
            ));
            start = end;
        }
        f.write_str(&blocks.join("\n"))
    }
}

fn indent(body: &str) -> String {
    body.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Finds the Ruby interpreter: `BOSH_RS_RUBY` if set (a path, or a name searched on PATH),
/// else `ruby` on PATH.
pub fn ruby_locate() -> Result<PathBuf, RenderError> {
    ruby_locate_in(std::env::var_os(RUBY_ENV), std::env::var_os("PATH"))
}

/// [`ruby_locate`] with the environment passed in.
pub fn ruby_locate_in(
    override_: Option<OsString>,
    path: Option<OsString>,
) -> Result<PathBuf, RenderError> {
    let wanted = override_
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| OsString::from("ruby"));
    let wanted_path = PathBuf::from(&wanted);
    let missing = || RenderError::RubyMissing {
        program: wanted.to_string_lossy().into_owned(),
    };
    if wanted_path.components().count() > 1 || wanted_path.is_absolute() {
        return if wanted_path.is_file() {
            Ok(wanted_path)
        } else {
            Err(missing())
        };
    }
    let path = path.ok_or_else(missing)?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(&wanted_path))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(missing)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Renders `request` with the Ruby found by [`ruby_locate`] and the default timeout.
pub fn render_batch(request: &RenderRequest) -> Result<RenderedBatch, RenderError> {
    Renderer::locate()?.render_batch(request)
}

/// A configured template renderer.
#[derive(Debug, Clone)]
pub struct Renderer {
    ruby: PathBuf,
    timeout: Duration,
}

impl Renderer {
    /// The default limit for one batch; a template looping forever is killed after it.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    pub fn new(ruby: PathBuf) -> Self {
        Self {
            ruby,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// A renderer using [`ruby_locate`]'s interpreter.
    pub fn locate() -> Result<Self, RenderError> {
        ruby_locate().map(Self::new)
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn ruby(&self) -> &Path {
        &self.ruby
    }

    /// Renders every monit file and template of the batch in one Ruby process.
    pub fn render_batch(&self, request: &RenderRequest) -> Result<RenderedBatch, RenderError> {
        request_validate(request)?;
        let wire = WireRequest {
            dns: &request.dns,
            instances: request
                .instances
                .iter()
                .map(|i| WireInstance {
                    spec: &i.instance,
                    jobs: i
                        .jobs
                        .iter()
                        .map(|j| WireJob {
                            name: &j.name,
                            release: &j.release,
                            properties: &j.properties,
                            links: &j.links,
                            monit: &j.monit,
                            templates: j
                                .templates
                                .iter()
                                .map(|t| WireTemplate {
                                    source: &t.source,
                                    text: &t.text,
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        };
        let input = serde_json::to_vec(&wire).map_err(|e| RenderError::Request {
            field: "instances".into(),
            message: e.to_string(),
        })?;
        let output = self.run(input)?;
        let answer: WireAnswer = serde_json::from_slice(&output)
            .map_err(|e| RenderError::Answer(format!("malformed JSON: {e}")))?;
        tracing::debug!(
            pid = answer.pid,
            instances = request.instances.len(),
            "templates rendered"
        );
        assemble(request, answer)
    }

    /// Runs the script once: the request goes in on stdin, the answer comes back on stdout.
    fn run(&self, input: Vec<u8>) -> Result<Vec<u8>, RenderError> {
        let mut script = tempfile::Builder::new()
            .prefix("bosh-rs-renderer")
            .suffix(".rb")
            .tempfile()
            .map_err(|source| RenderError::Io {
                action: "writing the script of",
                source,
            })?;
        script
            .write_all(RENDERER_SCRIPT.as_bytes())
            .map_err(|source| RenderError::Io {
                action: "writing the script of",
                source,
            })?;
        let mut command = Command::new(&self.ruby);
        // Templates see only what Ruby needs, not the director's own environment.
        command.env_clear();
        for (k, v) in std::env::vars_os() {
            if RUBY_ENV_KEPT.iter().any(|kept| k == *kept) {
                command.env(k, v);
            }
        }
        let mut child = command
            .arg(script.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    RenderError::RubyMissing {
                        program: self.ruby.display().to_string(),
                    }
                } else {
                    RenderError::Spawn {
                        program: self.ruby.clone(),
                        source,
                    }
                }
            })?;
        let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(RenderError::Answer("renderer pipes missing".into()));
        };
        // Writing and reading happen at once: a large batch would fill both pipes otherwise.
        let writer = std::thread::spawn(move || {
            let r = stdin.write_all(&input);
            drop(stdin);
            r
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = stdout.read_to_end(&mut buf).map(|_| buf);
            let _ = tx.send(r);
        });
        let output = match rx.recv_timeout(self.timeout) {
            Ok(r) => r,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RenderError::Timeout(self.timeout));
            }
        };
        let status = child.wait().map_err(|source| RenderError::Io {
            action: "waiting for",
            source,
        })?;
        let stderr = err_reader.join().unwrap_or_default();
        let write_result = writer.join();
        if !status.success() {
            let shown = &stderr[stderr.len().saturating_sub(STDERR_KEPT)..];
            return Err(RenderError::RendererFailed {
                status: status.to_string(),
                stderr: String::from_utf8_lossy(shown).trim().to_owned(),
            });
        }
        if let Ok(Err(source)) = write_result {
            return Err(RenderError::Io {
                action: "writing the request to",
                source,
            });
        }
        output.map_err(|source| RenderError::Io {
            action: "reading the answer of",
            source,
        })
    }
}

fn request_validate(request: &RenderRequest) -> Result<(), RenderError> {
    let bad = |field: String, message: &str| RenderError::Request {
        field,
        message: message.to_owned(),
    };
    for (i, inst) in request.instances.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        for (j, job) in inst.jobs.iter().enumerate() {
            let at = format!("instances[{i}].jobs[{j}]");
            if job.name.is_empty() || !path_is_relative_plain(&job.name) || job.name.contains('/') {
                return Err(bad(
                    format!("{at}.name"),
                    "a job name must be a plain file name",
                ));
            }
            if !seen.insert(&job.name) {
                return Err(bad(
                    format!("{at}.name"),
                    &format!("job '{}' appears twice on the instance", job.name),
                ));
            }
            for (k, t) in job.templates.iter().enumerate() {
                if !path_is_relative_plain(&t.destination) {
                    return Err(bad(
                        format!("{at}.templates[{k}].destination"),
                        &format!(
                            "'{}' of template '{}' must be a relative path without '..'",
                            t.destination, t.source
                        ),
                    ));
                }
                if t.destination == "monit" || t.destination == LINKS_JSON {
                    return Err(bad(
                        format!("{at}.templates[{k}].destination"),
                        &format!("'{}' is reserved by the director", t.destination),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn path_is_relative_plain(p: &str) -> bool {
    !p.is_empty()
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fn assemble(request: &RenderRequest, answer: WireAnswer) -> Result<RenderedBatch, RenderError> {
    if answer.instances.len() != request.instances.len() {
        return Err(RenderError::Answer(format!(
            "{} instances asked, {} answered",
            request.instances.len(),
            answer.instances.len()
        )));
    }
    let mut failures = Vec::new();
    let mut instances = Vec::new();
    for (inst, got) in request.instances.iter().zip(answer.instances) {
        if got.jobs.len() != inst.jobs.len() {
            return Err(RenderError::Answer(format!(
                "instance {}: {} jobs asked, {} answered",
                inst.instance.id,
                inst.jobs.len(),
                got.jobs.len()
            )));
        }
        let mut jobs = Vec::new();
        for (job, got_job) in inst.jobs.iter().zip(got.jobs) {
            if got_job.templates.len() != job.templates.len() {
                return Err(RenderError::Answer(format!(
                    "job {}: {} templates asked, {} answered",
                    job.name,
                    job.templates.len(),
                    got_job.templates.len()
                )));
            }
            let mut fail = |template: &str, e: WireError| {
                failures.push(TemplateFailure {
                    instance_group: inst.instance.name.clone(),
                    instance_id: inst.instance.id.clone(),
                    index: inst.instance.index,
                    job: job.name.clone(),
                    template: template.to_owned(),
                    line: e.line.and_then(|l| l.parse().ok()),
                    message: e.message,
                })
            };
            let monit = match got_job.monit.into_result() {
                Ok(c) => c,
                Err(e) => {
                    fail("monit", e);
                    String::new()
                }
            };
            let mut files = Vec::new();
            for (t, outcome) in job.templates.iter().zip(got_job.templates) {
                match outcome.into_result() {
                    Ok(content) => files.push(RenderedFile {
                        source: t.source.clone(),
                        destination: t.destination.clone(),
                        content,
                    }),
                    Err(e) => fail(&t.source, e),
                }
            }
            files.push(RenderedFile {
                source: LINKS_JSON.into(),
                destination: LINKS_JSON.into(),
                content: links_json(&job.provided_links),
            });
            jobs.push(RenderedJob {
                name: job.name.clone(),
                monit,
                files,
            });
        }
        instances.push(RenderedInstance {
            name: inst.instance.name.clone(),
            id: inst.instance.id.clone(),
            index: inst.instance.index,
            jobs,
        });
    }
    if !failures.is_empty() {
        return Err(TemplateErrors { failures }.into());
    }
    Ok(RenderedBatch {
        instances,
        renderer_pid: answer.pid,
    })
}

/// `.bosh/links.json`: the provided links sorted by group, pretty JSON and a newline, as
/// Ruby's `JSON.pretty_generate` writes it.
pub fn links_json(provided: &[ProvidedLink]) -> String {
    let mut sorted: Vec<&ProvidedLink> = provided.iter().collect();
    sorted.sort_by(|a, b| a.group.cmp(&b.group));
    let mut s = serde_json::to_string_pretty(&sorted).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

#[derive(Serialize)]
struct WireRequest<'a> {
    dns: &'a DnsEncoding,
    instances: Vec<WireInstance<'a>>,
}

#[derive(Serialize)]
struct WireInstance<'a> {
    spec: &'a InstanceContext,
    jobs: Vec<WireJob<'a>>,
}

#[derive(Serialize)]
struct WireJob<'a> {
    name: &'a str,
    release: &'a ReleaseRef,
    properties: &'a serde_json::Map<String, serde_json::Value>,
    links: &'a IndexMap<String, LinkSpec>,
    monit: &'a str,
    templates: Vec<WireTemplate<'a>>,
}

#[derive(Serialize)]
struct WireTemplate<'a> {
    source: &'a str,
    text: &'a str,
}

#[derive(Deserialize)]
struct WireAnswer {
    pid: u32,
    instances: Vec<WireInstanceAnswer>,
}

#[derive(Deserialize)]
struct WireInstanceAnswer {
    jobs: Vec<WireJobAnswer>,
}

#[derive(Deserialize)]
struct WireJobAnswer {
    monit: WireOutcome,
    templates: Vec<WireOutcome>,
}

#[derive(Deserialize)]
struct WireOutcome {
    content: Option<String>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireError {
    line: Option<String>,
    message: String,
}

impl WireOutcome {
    fn into_result(self) -> Result<String, WireError> {
        match (self.content, self.error) {
            (_, Some(e)) => Err(e),
            (Some(c), None) => Ok(c),
            (None, None) => Err(WireError {
                line: None,
                message: "the renderer answered neither content nor error".into(),
            }),
        }
    }
}
