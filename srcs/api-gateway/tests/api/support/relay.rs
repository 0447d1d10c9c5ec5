//! A TCP relay between the gateway and the real RabbitMQ, so a test can make
//! the broker unreachable, reachable again, cut live connections, or hold
//! back everything the broker sends (no confirms) without touching the
//! broker that other tests share.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Relay {
    pub port: u16,
    state: Arc<State>,
}

struct State {
    target: u16,
    /// false: accepted connections are closed at once (broker "down").
    forward: AtomicBool,
    /// true: bytes from the broker are held back until false again.
    paused: watch::Sender<bool>,
    /// Bumped to close every live connection.
    cut: watch::Sender<u64>,
    /// Connections relayed so far (refused ones not counted).
    relayed: AtomicUsize,
}

impl Relay {
    /// Listens on a free port and relays to 127.0.0.1:`target`.
    pub async fn start(target: u16, forward: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            target,
            forward: AtomicBool::new(forward),
            paused: watch::Sender::new(false),
            cut: watch::Sender::new(0),
            relayed: AtomicUsize::new(0),
        });
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if accepting.forward.load(Ordering::SeqCst) {
                    accepting.relayed.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(relay(client, accepting.clone()));
                }
                // else: `client` is dropped, closing the connection.
            }
        });
        Self { port, state }
    }

    pub fn set_forward(&self, on: bool) {
        self.state.forward.store(on, Ordering::SeqCst);
    }

    pub fn set_paused(&self, paused: bool) {
        self.state.paused.send_replace(paused);
    }

    /// How many connections it has relayed (or is relaying): which node a
    /// client picked, and whether it reconnected.
    pub fn relayed(&self) -> usize {
        self.state.relayed.load(Ordering::SeqCst)
    }

    /// Closes every connection relayed so far (new ones are still accepted
    /// if forwarding is on).
    pub fn cut(&self) {
        self.state.cut.send_modify(|n| *n += 1);
    }
}

async fn relay(client: TcpStream, state: Arc<State>) {
    let Ok(broker) = TcpStream::connect(("127.0.0.1", state.target)).await else {
        return;
    };
    let mut cut = state.cut.subscribe();
    cut.mark_unchanged();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut broker_read, mut broker_write) = broker.into_split();
    let upstream = tokio::io::copy(&mut client_read, &mut broker_write);
    let mut paused = state.paused.subscribe();
    let downstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = broker_read.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            while *paused.borrow_and_update() {
                if paused.changed().await.is_err() {
                    return Ok(());
                }
            }
            client_write.write_all(&buf[..n]).await?;
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = cut.changed() => {}
    }
}
