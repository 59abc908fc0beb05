//! The `rollgate` binary: everything lives in the library; see `rollgate::cli`.

fn main() -> std::process::ExitCode {
    rollgate::cli::main()
}
