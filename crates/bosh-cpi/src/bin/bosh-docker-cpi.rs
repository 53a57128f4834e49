//! The docker CPI as an external CPI executable: `bosh-docker-cpi -configPath FILE`, one JSON
//! request on stdin, one JSON response on stdout (always valid JSON), logs on stderr.

use bosh_cpi::docker::DockerCpi;

fn main() {
    bosh_cpi::serve::executable_main(
        "bosh-docker-cpi",
        "BOSH_DOCKER_CPI_LOG",
        DockerCpi::from_config_file,
    );
}
