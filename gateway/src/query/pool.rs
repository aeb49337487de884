//! A small connection pool per `[[databases]]` entry: at most `pool_size` connections,
//! idle ones reused, closed ones dropped.
//!
//! Hand-rolled rather than deadpool-postgres: the gateway needs only "a permit, then an
//! idle or a new connection within the connect timeout", which is a semaphore and a
//! vector; no further dependency, and the errors stay the gateway's own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;

use crate::config::DatabaseConfig;
use crate::error::{Error, Result};

/// The connections to one database.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) name: String,
    /// Every statement is cancelled by the server after this.
    pub(crate) statement_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// The URL, password source and TLS settings of each new connection.
    database: DatabaseConfig,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

/// A connection taken from the pool; it goes back when dropped, if it is open and idle
/// ([`Conn::idle`]). One dropped in the middle of a round trip (the caller gone, a timeout)
/// still has its statement running on the server: that is cancelled and the connection
/// closed, or the next caller would wait behind it, holding no slot of its own.
#[derive(Debug)]
pub(crate) struct Conn {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
    /// Every answer to what was sent on it has arrived.
    idle: bool,
}

impl Pool {
    pub(crate) fn new(db: &DatabaseConfig) -> Arc<Pool> {
        Arc::new(Pool {
            name: db.name.clone(),
            statement_timeout: db.statement_timeout,
            connect_timeout: db.connect_timeout,
            database: db.clone(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(db.pool_size)),
        })
    }

    /// A connection: an idle one, or a new one. Waits for a free slot at most the connect
    /// timeout.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Conn> {
        let name = &self.name;
        let permit = tokio::time::timeout(
            self.connect_timeout,
            Arc::clone(&self.permits).acquire_owned(),
        )
        .await
        .map_err(|_| {
            Error::ResourceExhausted(format!(
                "every connection of database {name:?} is busy (databases.pool_size); try again later"
            ))
        })?
        .map_err(|_| Error::ShuttingDown)?;
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(c) if !c.is_closed() => {
                    return Ok(Conn {
                        client: Some(c),
                        pool: Arc::clone(self),
                        _permit: permit,
                        idle: false,
                    })
                }
                Some(_) => continue,
                None => break,
            }
        }
        let client = self.connect().await?;
        Ok(Conn {
            client: Some(client),
            pool: Arc::clone(self),
            _permit: permit,
            idle: false,
        })
    }

    async fn connect(&self) -> Result<Client> {
        Ok(crate::postgres::connect(&self.database, "alertmesh").await?)
    }
}

impl Conn {
    pub(crate) fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }

    /// Says that every answer to what was sent has arrived: the connection may be reused.
    pub(crate) fn idle(&mut self) {
        self.idle = true;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(c) = self.client.take() else { return };
        if c.is_closed() {
            return;
        }
        if self.idle {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
            return;
        }
        // Dropping the client closes the connection, but the server only notices when it
        // next writes: the statement is cancelled, on a connection of its own, bounded.
        let token = c.cancel_token();
        drop(c);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = Arc::clone(&self.pool);
        runtime.spawn(async move {
            let within = pool.connect_timeout;
            match tokio::time::timeout(within, crate::postgres::cancel(&pool.database, &token))
                .await
            {
                Ok(Ok(())) => tracing::debug!(database = %pool.name, "cancelled an abandoned statement"),
                Ok(Err(e)) => tracing::debug!(database = %pool.name, error = %e, "cannot cancel an abandoned statement"),
                Err(_) => tracing::debug!(database = %pool.name, "cancelling an abandoned statement timed out"),
            }
        });
    }
}
