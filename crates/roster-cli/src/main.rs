//! The `roster` binary; everything lives in the library so that it stays testable.

/// mimalloc, for Rust's allocations and, through the crate's `override` feature, for every
/// `malloc` of the process: SQLite's (bundled, so linked here) were the larger share. glibc's
/// malloc and free were 12–13% of the server's CPU samples under `mobile-mix` and `fanout`;
/// with mimalloc the server used 4–13% less CPU per request (docs/benchmarks.md, "The server's
/// allocator"). `no_thp` keeps it from asking for transparent huge pages, which had doubled the
/// idle RSS (37 MiB; 23 MiB without them, 19 MiB with glibc). docs/decisions.md, "The
/// server's allocator: mimalloc".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    roster_cli::main()
}
