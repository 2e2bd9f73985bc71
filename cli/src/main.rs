//! The `airlock` binary: glue around [`airlock_cli::main`].

fn main() -> std::process::ExitCode {
    airlock_cli::main()
}
