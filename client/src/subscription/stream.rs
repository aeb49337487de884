//! [`AlertStream`]: a [`Subscription`] as a `Stream` of alerts.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use alertmesh_proto::v1;

use super::Subscription;
use crate::Result;

type Reading = Pin<Box<dyn Future<Output = (Subscription, Result<Option<v1::Alert>>)> + Send>>;

/// A [`Subscription`] as a [`Stream`](tokio_stream::Stream) of alerts (see
/// [`Subscription::into_stream`]).
pub struct AlertStream {
    idle: Option<Subscription>,
    reading: Option<Reading>,
}

impl AlertStream {
    pub(super) fn new(subscription: Subscription) -> Self {
        AlertStream {
            idle: Some(subscription),
            reading: None,
        }
    }
}

impl std::fmt::Debug for AlertStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertStream")
            .field("subscription", &self.idle)
            .field("reading", &self.reading.is_some())
            .finish()
    }
}

impl tokio_stream::Stream for AlertStream {
    type Item = Result<v1::Alert>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.reading.is_none() {
            // The subscription moves into the read and comes back with its result.
            let Some(mut sub) = self.idle.take() else {
                return Poll::Ready(None);
            };
            self.reading = Some(Box::pin(async move {
                let next = sub.next().await;
                (sub, next)
            }));
        }
        let reading = self.reading.as_mut().expect("set above");
        let (sub, next) = std::task::ready!(reading.as_mut().poll(cx));
        self.reading = None;
        match next {
            Ok(Some(alert)) => {
                self.idle = Some(sub);
                Poll::Ready(Some(Ok(alert)))
            }
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}
