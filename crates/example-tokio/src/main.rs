//! steward in preload mode: see `app.rs`.

mod app;

fn main() -> std::process::ExitCode {
    app::main("1")
}
