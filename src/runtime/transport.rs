//! The transport under the `clickhouse` crate: connection set-up bounded in
//! time, and every response bounded in size. The crate reads an error
//! response whole into memory whatever its size; a server (or whatever
//! answers at the URL a set names) could exhaust the operator's memory
//! with one. Counting at the connection catches success and error bodies
//! alike.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

/// The largest response chmigrate reads by default: a ledger of about a
/// hundred thousand events fits; a few at once stay well inside the
/// operator's memory limit (256 MiB in the chart).
pub const MAX_RESPONSE_BYTES: u64 = 48 * 1024 * 1024;

/// Bounds connection set-up (TCP connect and TLS handshake together): a peer
/// that accepts the connection but never finishes the handshake — plain HTTP
/// spoken to for `https://`, a hung server — fails fast instead of waiting
/// for the long statement timeout. Each connection it makes is [`Capped`].
#[derive(Clone)]
pub struct Bounded<C> {
    pub inner: C,
    pub limit: Duration,
    pub max_response_bytes: u64,
}

impl<C> tower_service::Service<http::Uri> for Bounded<C>
where
    C: tower_service::Service<http::Uri> + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Capped<C::Response>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let fut = self.inner.call(uri);
        let (limit, max) = (self.limit, self.max_response_bytes);
        Box::pin(async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r.map(|io| Capped::new(io, max)).map_err(Into::into),
                Err(_) => Err(format!(
                    "connection (TCP and TLS handshake) not set up within {limit:?}"
                )
                .into()),
            }
        })
    }
}

/// A connection that fails a read once more than `limit` bytes arrived
/// since the last write: HTTP/1 sends a request, then reads its response,
/// so the count is per response, keep-alive included.
pub struct Capped<T> {
    inner: T,
    limit: u64,
    read: u64,
}

impl<T> Capped<T> {
    pub fn new(inner: T, limit: u64) -> Self {
        Capped {
            inner,
            limit,
            read: 0,
        }
    }
}

const CHUNK: usize = 16 * 1024;

impl<T: Read + Unpin> Read for Capped<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut local = [MaybeUninit::<u8>::uninit(); CHUNK];
        let want = buf.remaining().min(CHUNK);
        let mut rb = ReadBuf::uninit(&mut local[..want]);
        match Pin::new(&mut this.inner).poll_read(cx, rb.unfilled()) {
            Poll::Ready(Ok(())) => {
                let filled = rb.filled();
                this.read += filled.len() as u64;
                if this.read > this.limit {
                    return Poll::Ready(Err(io::Error::other(format!(
                        "the response is larger than {} bytes; not read further",
                        this.limit
                    ))));
                }
                buf.put_slice(filled);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: Write + Unpin> Write for Capped<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &r
            && *n > 0
        {
            this.read = 0;
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for Capped<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;

    use crate::runtime::{ChError, Connection, Endpoint};

    /// A server that answers every request with `status` and `size` bytes
    /// of body, streamed (as a hostile or broken peer would).
    fn server(status: u16, size: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                std::thread::spawn(move || {
                    let mut req = [0u8; 4096];
                    let _ = s.read(&mut req);
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {size}\r\nContent-Type: text/plain\r\n\r\n"
                    );
                    if s.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let chunk = vec![b'e'; 64 * 1024];
                    let mut left = size;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if s.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn a_response_past_the_cap_fails_the_request_instead_of_filling_memory() {
        for status in [500, 200] {
            // 8 GiB announced and streamed: reading it whole would take
            // minutes and all the memory there is.
            let mut e = Endpoint::new(server(status, 8 << 30));
            e.max_response_bytes = 1024 * 1024;
            let conn = Connection::new(e).unwrap();
            let started = std::time::Instant::now();
            let r = conn.text("SELECT 1", &[]).await;
            let err = r.expect_err("a response past the cap fails");
            if status == 200 {
                assert!(matches!(err, ChError::Unreachable { .. }), "{err:?}");
                assert!(
                    err.to_string().contains("larger than 1048576 bytes"),
                    "{err}"
                );
            } else {
                // The crate gives up reading the error body and reports the
                // status alone.
                assert!(err.to_string().contains("500"), "{err}");
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
        }
        // Under the cap, a response reads whole.
        let mut e = Endpoint::new(server(200, 100 * 1024));
        e.max_response_bytes = 1024 * 1024;
        let text = Connection::new(e)
            .unwrap()
            .text("SELECT 1", &[])
            .await
            .unwrap();
        assert_eq!(text.len(), 100 * 1024);
    }
}
