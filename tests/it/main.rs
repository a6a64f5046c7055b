//! The integration tests, in one binary: each module is one suite (`cargo test --test it
//! plan_cli::` runs one). One binary links the AWS SDK once instead of once per suite,
//! which was most of a fresh build's link time (the way ripgrep keeps its `tests/`).
//!
//! `direct_wire` stays a binary of its own: it sets AWS credentials in the process
//! environment, which no other test may share.
mod support;

mod access_emulator;
mod architecture;
mod bad_inputs;
mod batch_ops_emulator;
mod columnar_inventory;
mod crash_trials;
mod emulator_smoke;
mod emulator_wrapper;
mod faults_emulator;
mod fidelity_emulator;
mod finish_emulator;
mod job_cli;
mod job_emulator;
mod listing_emulator;
mod plan_cli;
mod preflight_emulator;
mod report_cli;
mod run_emulator;
mod s3_inventory;
mod security;
mod shards_cli;
mod verify_emulator;
mod versions_emulator;
