//! The `airlock` binary: glue around [`airlock::cli::main`].

fn main() -> std::process::ExitCode {
    airlock::cli::main()
}
