//! BOSH job templates rendered the way the director renders them (formats.md §7).
//!
//! - [`render_batch`] / [`Renderer::render_batch`]: every monit file and template of a
//!   batch of instances rendered by ONE Ruby process running our `renderer.rb`, which
//!   implements the bosh-template evaluation context (`p`, `if_p`, `link`, `if_link`,
//!   `spec`, ...) on stdlib ERB. Errors of the whole batch come back together, each naming
//!   the instance, job, template and ERB line.
//! - [`properties_bind`]: job-spec defaults applied to raw properties (§7.3); the caller
//!   binds before rendering, the renderer never reads the job spec.
//! - [`RenderedInstance::configuration_hash`], [`RenderedJob::template_hash`] and
//!   [`rendered_templates_archive`]: the hashes and the `.tgz` the apply spec carries.
//!
//! Pure inputs → rendered outputs: no database, no blobstore.

mod context;
mod job;
mod output;
mod render;

pub use context::{
    DnsEncoding, DnsGroup, GroupJobSpec, GroupJobTemplate, InstanceContext, LinkInstance, LinkSpec,
    ProvidedLink, ReleaseRef,
};
pub use job::{JobSourceError, JobTemplates, PropertyBindError, properties_bind};
pub use output::{ArchiveError, RenderedArchive, rendered_templates_archive};
pub use render::{
    InstanceRender, JobRender, LINKS_JSON, RUBY_ENV, RenderError, RenderRequest, RenderedBatch,
    RenderedFile, RenderedInstance, RenderedJob, Renderer, TemplateErrors, TemplateFailure,
    TemplateSource, links_json, render_batch, ruby_locate, ruby_locate_in,
};
