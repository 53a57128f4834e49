//! The sim CPI as an external CPI executable: `bosh-sim-cpi -configPath FILE`, one JSON
//! request on stdin, one JSON response on stdout (always valid JSON), logs on stderr.

use bosh_cpi::sim::SimCpi;

fn main() {
    bosh_cpi::serve::executable_main("bosh-sim-cpi", "BOSH_SIM_CPI_LOG", SimCpi::from_config_file);
}
