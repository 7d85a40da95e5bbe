//! The example as a second version, for the binary upgrade test: see `app.rs`.

#[path = "../app.rs"]
mod app;

fn main() -> std::process::ExitCode {
    app::main("2")
}
