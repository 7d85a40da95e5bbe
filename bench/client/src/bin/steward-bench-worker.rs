//! The scale benchmark's trivial worker: says READY=1 on NOTIFY_SOCKET when asked to
//! (`notify` argument), then waits for its stop signal, whose default action ends it.

use std::os::unix::net::UnixDatagram;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("notify") {
        let path = std::env::var("NOTIFY_SOCKET").expect("NOTIFY_SOCKET");
        UnixDatagram::unbound()
            .and_then(|socket| socket.send_to(b"READY=1", &path))
            .expect("notify the master");
    }
    loop {
        std::thread::park();
    }
}
