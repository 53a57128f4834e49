//! One module per group of commands. Each module owns a clap `Subcommand` enum that is
//! flattened into [`Command`], so the top-level command list is the union of the groups.

use crate::GlobalOpts;
use crate::ui::Ui;

pub mod director;
pub mod inspect;
pub mod interpolate;
pub mod release;
pub mod stemcell;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Release(release::ReleaseCommand),
    #[command(flatten)]
    Inspect(inspect::InspectCommand),
    #[command(flatten)]
    Interpolate(interpolate::InterpolateCommand),
    #[command(flatten)]
    Stemcell(stemcell::StemcellCommand),
    #[command(flatten)]
    Director(director::DirectorCommand),
}

pub fn run(cmd: Command, global: &GlobalOpts, ui: &mut Ui) -> anyhow::Result<()> {
    match cmd {
        Command::Release(c) => release::run(c, global, ui),
        Command::Inspect(c) => inspect::run(c, global, ui),
        Command::Interpolate(c) => interpolate::run(c, global, ui),
        Command::Stemcell(c) => stemcell::run(c, global, ui),
        Command::Director(c) => director::run(c, global, ui),
    }
}
