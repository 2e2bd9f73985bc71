//! The `airlock` command, built inside the test package so that its end-to-end tests can run it
//! (`CARGO_BIN_EXE_airlock-cli`). The same code as the `airlock` binary: `airlock_cli::main`.

fn main() -> std::process::ExitCode {
    airlock_cli::main()
}
