//! `((var))` interpolation, go-patch ops files and variable generation, with the semantics
//! and messages of the reference `bosh` CLI (`bosh interpolate`, and the vars handling that
//! `deploy`/`create-env` share with it).
//!
//! - [`pointer`]: go-patch paths; [`patch`]: operations and ops files.
//! - [`template::evaluate`]: ops, then variables, then `--path`, printed as the CLI prints.
//! - [`vars`]: variable sources and the vars store; [`generate`]: generated values.
//! - [`Error`]: the reference's error tree; its `Display` is what the CLI prints on failure.

pub mod error;
pub mod generate;
mod gofmt;
pub mod patch;
pub mod pointer;
pub mod template;
pub mod vars;

pub use error::Error;
pub use patch::{
    Op, OpDefinition, OpDefinitionError, PatchError, op_definitions_from_yaml, ops_from_definitions,
};
pub use pointer::{Modifier, Pointer, PointerError, Token};
pub use template::{EvaluateOpts, evaluate};
pub use vars::{StaticVariables, VarSources, VariableDefinition, Variables, VarsStore};

/// Reads an ops file: each operation's failures are described as
/// `operation [<i>] in <path> failed`, as the reference does for `-o` files.
pub fn read_ops_file(path: &str) -> Result<Op, Error> {
    if path.is_empty() {
        return Err(Error::msg("Expected file path to be non-empty"));
    }
    let bytes = vars::read_file(std::path::Path::new(path))
        .map_err(|e| e.context(format!("Reading ops file '{path}'")))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut defs = op_definitions_from_yaml(&text)
        .map_err(|e| e.context(format!("Deserializing ops file '{path}'")))?;
    for (i, def) in defs.iter_mut().enumerate() {
        def.error = Some(format!("operation [{i}] in {path} failed"));
    }
    ops_from_definitions(&defs).map_err(|e| Error::from(e).context("Building ops"))
}
