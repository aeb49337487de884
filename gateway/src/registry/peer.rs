//! A source gateway as a schema registry: its `GetSchema` RPC, reached with the mirror's
//! own URL, token and TLS files, for the topic the mirror copies. So a mirror of a
//! Confluent-framed topic learns its schemas with no registry configured.

use std::time::Duration;

use alertmesh_client::{Gateway, Options};
use alertmesh_proto::v1;

use super::client::FetchError;

/// `GetSchema` on one topic of one source gateway.
#[derive(Debug)]
pub(crate) struct PeerRegistry {
    gateway: Gateway,
    topic: String,
    timeout: Duration,
}

impl PeerRegistry {
    /// The gateway at `url`, reached with `options` (the token stays bound to `url`).
    pub(crate) fn new(
        url: &str,
        topic: &str,
        options: &Options,
        timeout: Duration,
    ) -> Result<Self, String> {
        let options = Options {
            connect_timeout: timeout,
            ..options.clone()
        };
        Ok(PeerRegistry {
            gateway: Gateway::new(url, &options).map_err(|e| e.to_string())?,
            topic: topic.to_owned(),
            timeout,
        })
    }

    pub(crate) fn url(&self) -> &str {
        self.gateway.url()
    }

    /// The schema text the source gateway holds for `id` on the topic.
    pub(crate) async fn schema(&self, id: u32) -> Result<String, FetchError> {
        let call = async {
            // An answer is at most a schema of MAX_ANSWER_BYTES, as over HTTP.
            let client = self
                .gateway
                .connect()
                .await
                .map_err(|e| FetchError::Unavailable(e.to_string()))?
                .with_max_message_bytes(super::client::MAX_ANSWER_BYTES + 4096);
            let request = v1::GetSchemaRequest {
                topic: self.topic.clone(),
                id: Some(id),
            };
            match client.into_grpc().get_schema(request).await {
                Ok(answer) => Ok(answer.into_inner()),
                Err(s) if s.code() == tonic::Code::NotFound => Err(FetchError::NotFound(id)),
                Err(s) => Err(FetchError::Unavailable(format!(
                    "source gateway: {}",
                    alertmesh_client::status_line(&s)
                ))),
            }
        };
        let answer = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| {
                FetchError::Unavailable(format!("no answer within {:?}", self.timeout))
            })??;
        if answer.id != id || !answer.format.eq_ignore_ascii_case("avro") {
            return Err(FetchError::Garbage(format!(
                "asked for schema id {id}, the source gateway answered id {} ({})",
                answer.id,
                alertmesh_alert::echo::line(&answer.format, 64)
            )));
        }
        Ok(answer.schema)
    }
}
