//! What the quorum's test binaries share: listening again on a voter's address.

use std::error::Error;
use std::time::Duration;

use tokio::net::TcpListener;

/// Listens on `address` again after the node that held it shut down. Another process's
/// outgoing connection may hold that port for a moment, so a refused bind is retried for
/// a few seconds before the test gives up.
pub(crate) async fn bind_again(address: &str) -> Result<TcpListener, Box<dyn Error>> {
    let mut attempts = 0;
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return Ok(listener),
            Err(error) if attempts < 50 => {
                attempts += 1;
                eprintln!("bind {address}: {error}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}
