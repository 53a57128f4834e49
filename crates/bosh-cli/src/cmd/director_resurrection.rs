//! Day-2 commands: resurrection (director-api.md §5.4): `update-resurrection on|off`, as the
//! official CLI's `cmd/update_resurrection.go`.

use anyhow::Context;
use reqwest::Method;

use super::{Out, Session};
use crate::GlobalOpts;
use crate::director::ReqBody;

#[derive(clap::Subcommand, Debug)]
pub enum ResurrectionCommand {
    /// Enable/disable resurrection
    #[command(name = "update-resurrection")]
    UpdateResurrection {
        #[arg(value_name = "on|off", value_parser = bool_arg, action = clap::ArgAction::Set)]
        enabled: bool,
    },
}

/// The official CLI's `BoolArg`: true|yes|on|enable and false|no|off|disable.
fn bool_arg(s: &str) -> Result<bool, String> {
    match s {
        "true" | "yes" | "on" | "enable" => Ok(true),
        "false" | "no" | "off" | "disable" => Ok(false),
        _ => Err(format!(
            "Expected boolean variable '{s}' to be either 'true' or 'false'"
        )),
    }
}

pub fn run(cmd: ResurrectionCommand, global: &GlobalOpts, out: &mut Out) -> anyhow::Result<()> {
    match cmd {
        ResurrectionCommand::UpdateResurrection { enabled } => {
            let (client, _) = Session::new(global)?.director(out)?;
            let body = serde_json::json!({ "resurrection_paused": !enabled });
            client
                .request_bytes(
                    Method::PUT,
                    "/resurrection",
                    ReqBody::Bytes(body.to_string().into_bytes(), "application/json".into()),
                    &[],
                )
                .context("Changing VM resurrection state for all")?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_off_words_are_the_official_clis() {
        for w in ["true", "yes", "on", "enable"] {
            assert_eq!(bool_arg(w), Ok(true));
        }
        for w in ["false", "no", "off", "disable"] {
            assert_eq!(bool_arg(w), Ok(false));
        }
        assert!(bool_arg("On").is_err());
    }

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: ResurrectionCommand,
    }

    #[test]
    fn the_argument_is_a_positional_word() {
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["bosh", "update-resurrection", "off"]).unwrap();
        let ResurrectionCommand::UpdateResurrection { enabled } = cli.cmd;
        assert!(!enabled);
        assert!(Cli::try_parse_from(["bosh", "update-resurrection"]).is_err());
        assert!(Cli::try_parse_from(["bosh", "update-resurrection", "maybe"]).is_err());
    }
}
