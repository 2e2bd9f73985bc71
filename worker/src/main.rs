//! `airlock-worker`: the process an isolated plugin runs in. A host starts it with one end of a
//! socket pair as its standard input, shares a memory buffer with it over that socket, sends it
//! the checked library's bytes, and drives the plugin over that channel; everything the plugin
//! asks of the host goes back over it. It takes no arguments; its limits and sandbox settings come in its environment.

fn main() -> std::process::ExitCode {
    airlock::worker::main()
}
