//! Release engineering: release directories (`create-release` and friends), fingerprints,
//! job/package archives, and release/stemcell tarballs — written as the reference CLI writes
//! them, and read defensively (every digest verified, hostile archives refused).

// Building releases from a directory (create-release, finalize-release, blobs).
pub mod blobs;
pub mod blobstore;
pub mod build;
pub mod create;
pub mod finalize;
pub mod fingerprint;
pub mod index;
pub mod release_dir;
pub mod tarball_write;

// Reading tarballs (hardened) and rewriting their digests.
pub mod archive;
pub mod rewrite;
pub mod stemcell;
pub mod tarball_read;
