//! A TCP proxy in front of redis-server that can lose one Lua script call the way a
//! network does: before it reaches Redis, or after Redis ran it but before its
//! answer gets back. Either way the client's connection is cut, so it cannot tell
//! which happened — what the Redis queue must then find out for itself.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Which half of the next script call is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// The call never reaches Redis.
    Request,
    /// Redis runs it; its answer is dropped.
    Answer,
}

/// A running proxy; it forwards everything until armed with [`LossyProxy::lose_next`].
pub struct LossyProxy {
    pub port: u16,
    armed: Arc<Mutex<Option<Loss>>>,
    lost: Arc<AtomicUsize>,
}

impl LossyProxy {
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(Mutex::new(None));
        let lost = Arc::new(AtomicUsize::new(0));
        let (a, l) = (armed.clone(), lost.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (a, l) = (a.clone(), l.clone());
                std::thread::spawn(move || relay(&client, upstream, &a, &l));
            }
        });
        Self { port, armed, lost }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Loses `loss` of the next `EVALSHA` any client sends.
    pub fn lose_next(&self, loss: Loss) {
        *self.armed.lock().unwrap() = Some(loss);
    }

    /// How many calls it has lost.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
}

fn relay(client: &TcpStream, upstream: u16, armed: &Mutex<Option<Loss>>, lost: &AtomicUsize) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let swallow = Arc::new(AtomicBool::new(false));
    let cut = |c: &TcpStream, s: &TcpStream| {
        let _ = c.shutdown(Shutdown::Both);
        let _ = s.shutdown(Shutdown::Both);
    };
    {
        let (mut from, mut to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
        let swallow = swallow.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                if swallow.load(Ordering::SeqCst) {
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            let _ = to.shutdown(Shutdown::Both);
        });
    }
    let (mut from, mut to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        let chunk = &buf[..n];
        if chunk.windows(7).any(|w| w == b"EVALSHA")
            && let Some(loss) = armed.lock().unwrap().take()
        {
            lost.fetch_add(1, Ordering::SeqCst);
            match loss {
                Loss::Request => return cut(client, &server),
                Loss::Answer => swallow.store(true, Ordering::SeqCst),
            }
        }
        if to.write_all(chunk).is_err() {
            return;
        }
    }
    cut(client, &server);
}
