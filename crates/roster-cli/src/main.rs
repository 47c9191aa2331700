//! The `roster` binary; everything lives in the library so that it stays testable.

fn main() -> std::process::ExitCode {
    roster_cli::main()
}
