fn main() -> std::process::ExitCode {
    dbswatch::cli::main()
}
