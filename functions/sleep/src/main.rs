//! `sleep` as a CGI program: for `wasm32-wasip1` a WASI 0.1 command that the runtime and
//! other WAGI hosts serve, natively one any CGI server runs. The handler is the library's.

fn main() -> std::process::ExitCode {
    sdk::cgi::run(sleep::handle)
}
