//! `bosh-rs interpolate` (alias `int`): applies ops files, interpolates variables and
//! prints the document, as the reference CLI's `interpolate` does.

use crate::GlobalOpts;
use crate::ui::Ui;
use bosh_interpolate::template::{EvaluateOpts, evaluate};
use bosh_interpolate::vars::{self, StaticVariables, VarSources, VarsStore};
use bosh_interpolate::{Op, Pointer};
use std::io::Read;

#[derive(clap::Subcommand, Debug)]
pub enum InterpolateCommand {
    /// Interpolates variables into a manifest
    #[command(name = "interpolate", visible_alias = "int")]
    Interpolate(InterpolateArgs),
}

/// The variable and ops-file flags that `interpolate` and `deploy` share.
#[derive(clap::Args, Debug, Default)]
pub struct TemplateFlags {
    /// Set variable
    #[arg(short = 'v', long = "var", value_name = "VAR=VALUE")]
    pub vars: Vec<String>,
    /// Set variable to file contents
    #[arg(long = "var-file", value_name = "VAR=PATH")]
    pub var_files: Vec<String>,
    /// Load variables from a YAML file
    #[arg(short = 'l', long = "vars-file", value_name = "PATH")]
    pub vars_files: Vec<String>,
    /// Load variables from environment variables (e.g.: 'MY' to load MY_var=value)
    #[arg(long = "vars-env", value_name = "PREFIX")]
    pub vars_envs: Vec<String>,
    /// Load/save variables from/to a YAML file
    #[arg(long = "vars-store", value_name = "PATH")]
    pub vars_store: Option<String>,
    /// Load manifest operations from a YAML file
    #[arg(short = 'o', long = "ops-file", value_name = "PATH")]
    pub ops_files: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct InterpolateArgs {
    /// Path to a template that will be interpolated ('-' reads standard input)
    #[arg(value_name = "PATH")]
    manifest: String,
    #[command(flatten)]
    template: TemplateFlags,
    /// Extract value out of template (e.g.: /private_key)
    #[arg(long = "path", value_name = "OP-PATH")]
    path: Option<String>,
    /// Expect all variables to be found, otherwise error
    #[arg(long = "var-errs")]
    var_errs: bool,
    /// Expect all variables to be used, otherwise error
    #[arg(long = "var-errs-unused")]
    var_errs_unused: bool,
}

pub fn run(cmd: InterpolateCommand, _global: &GlobalOpts, ui: &mut Ui) -> anyhow::Result<()> {
    match cmd {
        InterpolateCommand::Interpolate(args) => interpolate(args, ui),
    }
}

/// The reference reports bad option values through its flag parser, in this form.
fn flag_error(flag: &str, go_type: &str, err: bosh_interpolate::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "invalid argument for flag `{flag}' (expected {go_type}): {}",
        err.flat()
    )
}

pub fn read_manifest(arg: &str) -> Result<String, bosh_interpolate::Error> {
    if arg.is_empty() {
        return Err(bosh_interpolate::Error::msg(
            "Expected file path to be non-empty",
        ));
    }
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            bosh_interpolate::Error::msg(e.to_string()).context("Reading from stdin")
        })?;
        return Ok(text);
    }
    let bytes = vars::read_file(&vars::expand_path(arg))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Variable sources in the reference's precedence: environment, vars files, var files,
/// then `-v` values; the vars store is consulted last.
pub fn var_sources(args: &TemplateFlags) -> anyhow::Result<VarSources> {
    let mut statics = StaticVariables::default();
    for prefix in &args.vars_envs {
        let environ = std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        });
        let env_vars = vars::vars_from_env(prefix, environ)
            .map_err(|e| flag_error("--vars-env", "[]template.VarsEnvArg", e))?;
        statics.extend(env_vars);
    }
    for path in &args.vars_files {
        let file_vars = vars::read_vars_file(path)
            .map_err(|e| flag_error("-l, --vars-file", "[]template.VarsFileArg", e))?;
        statics.extend(file_vars);
    }
    for arg in &args.var_files {
        let (name, value) = vars::read_var_file(arg)
            .map_err(|e| flag_error("--var-file", "[]template.VarFileArg", e))?;
        statics.insert(name, value);
    }
    for arg in &args.vars {
        let (name, value) =
            vars::parse_var_kv(arg).map_err(|e| flag_error("-v, --var", "[]template.VarKV", e))?;
        statics.insert(name, value);
    }
    let store = match &args.vars_store {
        Some(path) => Some(
            VarsStore::new(path).map_err(|e| flag_error("--vars-store", "opts.VarsFSStore", e))?,
        ),
        None => None,
    };
    Ok(VarSources { statics, store })
}

/// The ops files of `-o`, in order, as one operation.
pub fn ops_read(flags: &TemplateFlags) -> anyhow::Result<Op> {
    let mut ops = Vec::new();
    for path in &flags.ops_files {
        ops.push(
            bosh_interpolate::read_ops_file(path)
                .map_err(|e| flag_error("-o, --ops-file", "[]opts.OpsFileArg", e))?,
        );
    }
    Ok(Op::Many(ops))
}

fn interpolate(args: InterpolateArgs, ui: &mut Ui) -> anyhow::Result<()> {
    let manifest = read_manifest(&args.manifest)?;
    let sources = var_sources(&args.template)?;
    let op = ops_read(&args.template)?;
    let mut opts = EvaluateOpts {
        expect_all_keys: args.var_errs,
        expect_all_vars_used: args.var_errs_unused,
        ..Default::default()
    };
    if let Some(path) = &args.path {
        let pointer = Pointer::parse(path)
            .map_err(|e| flag_error("--path", "patch.Pointer", bosh_interpolate::Error::from(e)))?;
        opts.post_var_substitution_op = Some(Op::Find { path: pointer });
        // Multi-line strings (keys, certificates) are printed raw rather than as YAML.
        opts.unescaped_multiline = true;
    }
    let text = evaluate(&manifest, &sources, Some(&op), &opts)?;
    ui.skip_succeeded();
    ui.block(text);
    Ok(())
}
