//! End-to-end tests: the plugin crates are built once into their own target directory, then
//! loaded through the public API and the CLI.

mod builtin;
mod calls;
mod cancel;
mod claims;
mod cli;
mod config;
mod contract_versions;
mod distribution;
mod durability;
mod editor_example;
mod embedder;
mod faults;
mod gates;
mod hooks;
mod hostile_corpus;
mod hostile_files;
mod hostile_plugins;
mod http;
mod http_stream;
mod isolation;
mod jobs;
mod kv;
mod mcp;
mod membrane;
mod outbound;
mod permissions;
mod pipeline;
mod routes;
mod sandbox;
mod scaffold;
mod schemas;
mod services;
mod soundness;
mod stream;
mod teardown;
