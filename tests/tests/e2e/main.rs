//! End-to-end tests: the plugin crates are built once into their own target directory, then
//! loaded through the public API and the CLI.

mod calls;
mod cli;
mod hostile_files;
mod pipeline;
mod teardown;
